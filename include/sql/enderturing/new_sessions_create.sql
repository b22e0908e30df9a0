-- The batch's sessions to load that have no sessions row yet: none of their rows can exist in any
-- session table (they are written in one transaction with their sessions row), so they are COPYed
-- straight into the targets.
CREATE TEMP TABLE {new_sessions} ON COMMIT DROP AS
SELECT b.session_id FROM batch_sources AS b
WHERE NOT EXISTS (SELECT 1 FROM {sessions} AS s WHERE s.id = b.session_id)
