-- The latest try of every component of one run.
SELECT DISTINCT ON (component_id)
    component_id, component_type, try_number, status, rows_in, rows_out, rows_dropped, rows_rejected
FROM declarative_component_runs
WHERE dag_id = %(dag_id)s AND run_id = %(run_id)s
ORDER BY component_id, try_number DESC
