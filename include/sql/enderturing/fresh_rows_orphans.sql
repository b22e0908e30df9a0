-- The soft relationships of the rows COPYed straight into the target for new sessions.
SELECT {orphan_counts}
FROM {new_sessions} AS n
JOIN {target} AS s ON s.{session_column} = n.session_id
