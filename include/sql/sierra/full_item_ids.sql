-- Full sync: the next batch_size items after last_synced_id. The limit applies to item_record
-- alone, before any join, so the batch always has exactly batch_size rows until the last one.
SELECT ir.record_id
FROM sierra_view.item_record AS ir
WHERE ir.record_id > %(last_synced_id)s
ORDER BY ir.record_id
LIMIT %(batch_size)s
