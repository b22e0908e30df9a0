-- The source digest of every staged session with a valid id of its own (two spellings of one UUID:
-- never skipped): its line's hash and its details' hashes (in a fixed order) under the row code's
-- version.
CREATE TEMP TABLE batch_sources ON COMMIT DROP AS
SELECT s.session_id,
       sha256({code_version} || s.line_hash || coalesce(d.hashes, ''::bytea)) AS source_hash
FROM staged_sessions AS s
JOIN (SELECT session_id FROM staged_sessions GROUP BY session_id HAVING count(*) = 1) AS own
  ON own.session_id = s.session_id
LEFT JOIN (
    SELECT session_id, string_agg(line_hash, ''::bytea ORDER BY line_hash) AS hashes
    FROM staged_details
    WHERE session_id IS NOT NULL
    GROUP BY session_id
) AS d ON d.session_id = s.session_id
