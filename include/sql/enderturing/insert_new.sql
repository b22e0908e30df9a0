-- Staged rows whose key is not in the target yet: a plain insert after an anti-join, much cheaper
-- than INSERT … ON CONFLICT row by row. Every writer of these tables holds the load's advisory
-- lock, so no other session inserts a key between this statement and the update before it.
INSERT INTO {target} ({columns})
SELECT {columns}
FROM {stage} AS s
WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {key_match})
ORDER BY {key}
