-- Ender Turing warehouse, version 2: the source digest of each session's last committed load, so an
-- unchanged session is skipped before it is transformed or sent (docs/enderturing.md, "Load").
-- Idempotent; on an existing warehouse the table starts empty: the next load of a session
-- processes it as before (unchanged rows keep their etl_loaded_at) and records its digest.
CREATE TABLE IF NOT EXISTS {schema}.etl_session_sources (
    session_id uuid NOT NULL PRIMARY KEY,
    source_hash bytea NOT NULL,
    etl_loaded_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO {schema}.etl_schema_version (version) VALUES (2) ON CONFLICT DO NOTHING;
