-- The batch's source digests (one per staged session), for the unchanged-session check and record.
CREATE TEMP TABLE batch_sources (session_id uuid NOT NULL PRIMARY KEY, source_hash bytea NOT NULL) ON COMMIT DROP
