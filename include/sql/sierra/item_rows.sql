-- One row per selected item, in the 13 output columns of the spec, ordered by item id.
-- Set-based, so it needs no index. The item's bib is its greatest linked bib id; per-bib values
-- are gathered once per distinct bib, then joined to the items in one step. Property rows are
-- joined unreduced and the lowest id wins in the final DISTINCT ON, whose sort the ORDER BY needs
-- anyway (a separate DISTINCT ON per property table would sort each table once more).
-- Empty strings become NULL so that both are written as an empty field.
-- Composed with psycopg.sql.SQL.format: the selected CTE takes the mode's id query (record_id and
-- itype_code_num; narrowed to one part's id range when a batch is copied in parts).
WITH selected AS ({selected_item_ids}),
item_bib AS (
    SELECT link.item_record_id, max(link.bib_record_id) AS bib_record_id
    FROM sierra_view.bib_record_item_record_link AS link
    JOIN selected AS s ON s.record_id = link.item_record_id
    WHERE link.bib_record_id IS NOT NULL
    GROUP BY link.item_record_id
),
chosen_bib AS (
    SELECT DISTINCT bib_record_id FROM item_bib
),
-- One pass over the chosen bibs' subfields gives both the classification (greatest 097 content)
-- and the shelfmark. row_to_json of the lateral row gives compact JSON with the keys in column
-- order (json_build_object adds blanks, jsonb reorders keys) and keeps a blank char(1) indicator
-- as " " (a ::text cast would not); the planner flattens it into a ROW(), twice as fast as a
-- scalar subquery per row.
bib_subfields AS (
    SELECT
        sf.record_id,
        max(sf.content) FILTER (WHERE sf.marc_tag = '097') AS classification,
        '[' || string_agg(
            row_to_json(entry)::text,
            ','
            ORDER BY sf.marc_tag, sf.occ_num, sf.varfield_id, sf.display_order, sf.tag, sf.content
        ) FILTER (WHERE sf.marc_tag <> '097') || ']' AS shelfmark_json
    FROM sierra_view.subfield AS sf
    CROSS JOIN LATERAL (
        SELECT sf.marc_tag, sf.marc_ind1, sf.marc_ind2, sf.field_type_code, sf.tag, sf.content
    ) AS entry
    JOIN chosen_bib AS b ON b.bib_record_id = sf.record_id
    WHERE sf.marc_tag IN ('097', '100', '110', '111', '130', '245')
    GROUP BY sf.record_id
),
bib_row AS (
    SELECT
        b.bib_record_id,
        bib_meta.record_num AS bib_number,
        bib_property.id AS bib_property_id,
        nullif(bib_property.best_author, '') AS best_author,
        nullif(bib_property.best_title, '') AS best_title,
        nullif(bib_property.material_code, '') AS material_code,
        nullif(material.name, '') AS material_name,
        nullif(bib_subfields.classification, '') AS classification,
        bib_subfields.shelfmark_json
    FROM chosen_bib AS b
    LEFT JOIN sierra_view.record_metadata AS bib_meta
        ON bib_meta.id = b.bib_record_id AND bib_meta.record_type_code = 'b'
    LEFT JOIN sierra_view.bib_record_property AS bib_property ON bib_property.bib_record_id = b.bib_record_id
    LEFT JOIN sierra_view.material_property_myuser AS material ON material.code = bib_property.material_code
    LEFT JOIN bib_subfields ON bib_subfields.record_id = b.bib_record_id
)
SELECT DISTINCT ON (ir.record_id)
    ir.record_id AS item_record_id,
    item_meta.record_num AS item_number,
    nullif(item_property.barcode, '') AS barcode,
    item_bib.bib_record_id,
    bib_row.bib_number,
    bib_row.best_author,
    bib_row.best_title,
    coalesce(ir.itype_code_num, %(itype_null_fallback)s) AS itype_code_num,
    nullif(itype.name, '') AS item_type_name,
    bib_row.material_code,
    bib_row.material_name,
    bib_row.classification,
    bib_row.shelfmark_json
FROM selected AS ir
LEFT JOIN sierra_view.record_metadata AS item_meta
    ON item_meta.id = ir.record_id AND item_meta.record_type_code = 'i'
LEFT JOIN sierra_view.item_record_property AS item_property ON item_property.item_record_id = ir.record_id
LEFT JOIN item_bib ON item_bib.item_record_id = ir.record_id
LEFT JOIN bib_row ON bib_row.bib_record_id = item_bib.bib_record_id
LEFT JOIN sierra_view.itype_property_myuser AS itype ON itype.code = ir.itype_code_num
ORDER BY ir.record_id, item_property.id, bib_row.bib_property_id
