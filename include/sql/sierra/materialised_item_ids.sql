-- The batch's materialised selection (see materialise_selection.sql), narrowed to one part's id
-- range (part_after_id, part_through_id] when the batch is copied in parts.
SELECT record_id, itype_code_num
FROM pg_temp.sierra_selected_items
WHERE record_id > %(part_after_id)s
  AND record_id <= %(part_through_id)s
