-- Sessions whose digest equals their last committed load's and whose sessions row is still there:
-- taken out of the batch (not transformed, not sent).
DELETE FROM batch_sources AS b
USING {sources} AS h
WHERE h.session_id = b.session_id
  AND h.source_hash = b.source_hash
  AND EXISTS (SELECT 1 FROM {sessions} AS s WHERE s.id = b.session_id)
