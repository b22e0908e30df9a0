-- Full sync: the next batch_size items after last_synced_id, with the item's itype (the only
-- item_record column the rows need). The limit applies to item_record alone, before any join,
-- so the batch always has exactly batch_size rows until the last one.
-- A batch copied in parts narrows it to one part's id range (part_after_id, part_through_id];
-- the ranges end at the batch's largest id, so the limit still cuts the same page.
SELECT ir.record_id, ir.itype_code_num
FROM sierra_view.item_record AS ir
WHERE ir.record_id > %(last_synced_id)s
  AND ir.record_id > %(part_after_id)s
  AND ir.record_id <= %(part_through_id)s
ORDER BY ir.record_id
LIMIT %(batch_size)s
