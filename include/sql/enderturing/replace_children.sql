-- Children of re-loaded parents that the API no longer reports; rows still reported stay and are
-- upserted, so an unchanged child keeps its etl_loaded_at.
DELETE FROM {target} AS t
USING (SELECT DISTINCT parent_key FROM {replace_set}) AS r
WHERE t.{parent} = r.parent_key
  AND NOT EXISTS (SELECT 1 FROM {stage} AS s WHERE {key_match})
