-- Changes sync: existing items changed since the bound, plus existing items linked to a changed
-- bib, with the item's itype (the only item_record column the rows need). The bound is a
-- timestamptz compared to the column as is (no AT TIME ZONE).
-- A batch copied in parts narrows it to one part's id range (part_after_id, part_through_id].
SELECT ir.record_id, ir.itype_code_num
FROM sierra_view.item_record AS ir
JOIN sierra_view.record_metadata AS rm ON rm.id = ir.record_id
WHERE rm.record_type_code = 'i'
  AND rm.record_last_updated_gmt >= %(since)s
  AND ir.record_id > %(part_after_id)s
  AND ir.record_id <= %(part_through_id)s
UNION
SELECT ir.record_id, ir.itype_code_num
FROM sierra_view.record_metadata AS rm
JOIN sierra_view.bib_record_item_record_link AS link ON link.bib_record_id = rm.id
JOIN sierra_view.item_record AS ir ON ir.record_id = link.item_record_id
WHERE rm.record_type_code = 'b'
  AND rm.record_last_updated_gmt >= %(since)s
  AND ir.record_id > %(part_after_id)s
  AND ir.record_id <= %(part_through_id)s
