-- One row per staged line (sessions.ndjson, details.ndjson): its number, its session's id (NULL: no
-- UUID) and its hash. The batch's per-session state lives here, not in the client's memory.
CREATE TEMP TABLE staged_sessions (line_no integer NOT NULL, session_id uuid, line_hash bytea NOT NULL) ON COMMIT DROP;
CREATE TEMP TABLE staged_details (line_no integer NOT NULL, session_id uuid, line_hash bytea NOT NULL) ON COMMIT DROP
