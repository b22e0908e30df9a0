-- Facts about the selected items (the batch's materialised selection), read in the extraction's
-- snapshot: row count, largest id and the items whose NULL itype gets the fallback value.
WITH selected AS ({selected_item_ids})
SELECT
    count(*) AS item_count,
    max(record_id) AS max_item_id,
    count(*) FILTER (WHERE itype_code_num IS NULL) AS null_itypes,
    (array_agg(record_id ORDER BY record_id) FILTER (WHERE itype_code_num IS NULL))[1:20]
        AS first_null_itype_ids
FROM selected
