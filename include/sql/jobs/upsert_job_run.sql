INSERT INTO declarative_job_runs (
    dag_id, run_id, job_name, environment, connections, job_file_sha256, status, started_at,
    finished_at, duration_s, rows_read, rows_written, rows_rejected, rows_dropped
) VALUES (
    %(dag_id)s, %(run_id)s, %(job_name)s, %(environment)s, %(connections)s, %(job_file_sha256)s,
    %(status)s, %(started_at)s, %(finished_at)s, %(duration_s)s, %(rows_read)s, %(rows_written)s,
    %(rows_rejected)s, %(rows_dropped)s
)
ON CONFLICT (dag_id, run_id) DO UPDATE SET
    environment = EXCLUDED.environment,
    connections = EXCLUDED.connections,
    job_file_sha256 = EXCLUDED.job_file_sha256,
    status = EXCLUDED.status,
    started_at = COALESCE(declarative_job_runs.started_at, EXCLUDED.started_at),
    finished_at = EXCLUDED.finished_at,
    duration_s = EXCLUDED.duration_s,
    rows_read = EXCLUDED.rows_read,
    rows_written = EXCLUDED.rows_written,
    rows_rejected = EXCLUDED.rows_rejected,
    rows_dropped = EXCLUDED.rows_dropped
