-- One scan of the stage after the upsert: how many staged keys are NOT in the target (must be 0,
-- spec §5 step 5; 0 without a lookup when the upsert wrote every staged row), then one count per
-- soft relationship of the table (orphans, only logged).
SELECT {missing}{orphan_counts}
FROM {stage} AS s
