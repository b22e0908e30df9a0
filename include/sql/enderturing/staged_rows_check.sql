-- One scan of the stage after the upsert: how many staged keys are NOT in the target (must be 0,
-- spec §5 step 5), then one count per soft relationship of the table (orphans, only logged).
SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {key_match})){orphan_counts}
FROM {stage} AS s
