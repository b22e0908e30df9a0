-- The selection's largest item id, and the ids that cut it into parts of nearly equal size (the
-- last id of each part but the last). Composed with psycopg.sql.SQL.format: the selected CTE
-- takes the batch's materialised selection.
WITH selected AS ({selected_item_ids})
SELECT
    max(record_id) AS last_id,
    percentile_disc(%(fractions)s::float8[]) WITHIN GROUP (ORDER BY record_id) AS cut_ids
FROM selected
