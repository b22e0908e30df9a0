-- Tries still 'running' when the run is finalized ended without recording their end: the task was
-- killed, ran out of memory or lost its worker. Their start and counters stay as recorded.
UPDATE declarative_component_runs
SET status = 'failed',
    finished_at = now(),
    duration_s = extract(epoch FROM now() - started_at),
    error = %(error)s
WHERE dag_id = %(dag_id)s AND run_id = %(run_id)s AND status = 'running'
RETURNING component_id, try_number
