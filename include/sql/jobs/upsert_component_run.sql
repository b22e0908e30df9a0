INSERT INTO declarative_component_runs (
    dag_id, run_id, component_id, try_number, component_type, environment, status, started_at,
    finished_at, duration_s, rows_in, rows_out, rows_dropped, rows_rejected, reject_reasons, details, error
) VALUES (
    %(dag_id)s, %(run_id)s, %(component_id)s, %(try_number)s, %(component_type)s, %(environment)s,
    %(status)s, %(started_at)s, %(finished_at)s, %(duration_s)s, %(rows_in)s, %(rows_out)s,
    %(rows_dropped)s, %(rows_rejected)s, %(reject_reasons)s, %(details)s, %(error)s
)
ON CONFLICT (dag_id, run_id, component_id, try_number) DO UPDATE SET
    component_type = EXCLUDED.component_type,
    environment = EXCLUDED.environment,
    status = EXCLUDED.status,
    started_at = EXCLUDED.started_at,
    finished_at = EXCLUDED.finished_at,
    duration_s = EXCLUDED.duration_s,
    rows_in = EXCLUDED.rows_in,
    rows_out = EXCLUDED.rows_out,
    rows_dropped = EXCLUDED.rows_dropped,
    rows_rejected = EXCLUDED.rows_rejected,
    reject_reasons = EXCLUDED.reject_reasons,
    details = EXCLUDED.details,
    error = EXCLUDED.error
