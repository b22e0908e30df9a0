-- The digests of the sessions this transaction loaded.
INSERT INTO {sources} AS h (session_id, source_hash)
SELECT session_id, source_hash FROM batch_sources ORDER BY session_id
ON CONFLICT (session_id) DO UPDATE
    SET source_hash = EXCLUDED.source_hash, etl_loaded_at = now()
    WHERE h.source_hash IS DISTINCT FROM EXCLUDED.source_hash
