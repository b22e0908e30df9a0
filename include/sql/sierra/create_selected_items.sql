-- The batch's selection, materialised once per batch (the connection is closed after each batch,
-- which drops it). Created before the read-only snapshot transaction begins: a READ ONLY
-- transaction may write to a temporary table but not create one. Needs the TEMPORARY privilege
-- on the database (PostgreSQL grants it to PUBLIC by default).
CREATE TEMP TABLE IF NOT EXISTS sierra_selected_items (
    record_id bigint NOT NULL,
    itype_code_num integer
)
