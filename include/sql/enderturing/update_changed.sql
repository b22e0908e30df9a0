-- Staged rows whose key is already in the target and whose values differ; an unchanged row keeps
-- its etl_loaded_at. The stage holds each key once (its unique index), so no row is updated twice.
UPDATE {target} AS t
SET ({non_key}) = ROW({stage_non_key}), etl_loaded_at = now()
FROM {stage} AS s
WHERE {key_match}
  AND ROW({target_non_key}) IS DISTINCT FROM ROW({stage_non_key})
