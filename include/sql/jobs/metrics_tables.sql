-- Metrics of declarative jobs: one row per job run, one row per component task try.
CREATE TABLE IF NOT EXISTS declarative_job_runs (
    dag_id text NOT NULL,
    run_id text NOT NULL,
    job_name text NOT NULL,
    environment text,
    connections jsonb NOT NULL DEFAULT '{}',
    job_file_sha256 text NOT NULL,
    status text NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    duration_s double precision,
    rows_read bigint NOT NULL DEFAULT 0,
    rows_written bigint NOT NULL DEFAULT 0,
    rows_rejected bigint NOT NULL DEFAULT 0,
    rows_dropped bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (dag_id, run_id)
);

CREATE TABLE IF NOT EXISTS declarative_component_runs (
    dag_id text NOT NULL,
    run_id text NOT NULL,
    component_id text NOT NULL,
    try_number integer NOT NULL,
    component_type text NOT NULL,
    environment text,
    status text NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    duration_s double precision,
    rows_in jsonb NOT NULL DEFAULT '{}',
    rows_out jsonb NOT NULL DEFAULT '{}',
    rows_dropped bigint NOT NULL DEFAULT 0,
    rows_rejected bigint NOT NULL DEFAULT 0,
    reject_reasons jsonb NOT NULL DEFAULT '{}',
    details jsonb NOT NULL DEFAULT '{}',
    error text,
    PRIMARY KEY (dag_id, run_id, component_id, try_number)
);
