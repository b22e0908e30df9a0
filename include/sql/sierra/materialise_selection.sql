-- Runs the mode's selection once, inside the snapshot; the batch's facts, cut points and COPY
-- read the result. Composed with psycopg.sql.SQL.format: the mode's id query follows the INSERT.
INSERT INTO pg_temp.sierra_selected_items (record_id, itype_code_num)
{selected_item_ids}
