-- Facts about the selected items, read in the extraction's snapshot: row count, largest id and
-- the items whose NULL itype gets the fallback value.
WITH selected AS ({selected_item_ids})
SELECT
    count(*) AS item_count,
    max(ir.record_id) AS max_item_id,
    count(*) FILTER (WHERE ir.itype_code_num IS NULL) AS null_itypes,
    (array_agg(ir.record_id ORDER BY ir.record_id) FILTER (WHERE ir.itype_code_num IS NULL))[1:20]
        AS first_null_itype_ids
FROM sierra_view.item_record AS ir
JOIN selected AS s ON s.record_id = ir.record_id
