"""A small, hand-built sierra_view with every awkward case, and an independent reference query."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg

from dev.sierra_data import Subfield, add_bib, add_item, bib_id, item_id
from dev.signum_server import COLUMNS  # the backend contract's column order

LONG_AGO = datetime.now(UTC) - timedelta(days=3)
AWKWARD_TITLE = 'Tab\there, "quoted", line\nbreak, CR\ronly – Война и мир, äö'

# item record_num -> bib record_nums (the greatest bib id wins)
LINKS = {n: [100 + n % 4] for n in range(1, 26)}
LINKS[5] = [101, 103, 102]
LINKS[7] = []
LINKS[18] = []
NULL_ITYPE_ITEMS = {9}


def build_catalogue(conn: psycopg.Connection, items: int = 25) -> None:
    """Four bibs and ``items`` items; items above 25 link like the first 25 (by ``n % 4``)."""
    add_bib(
        conn,
        100,
        title=AWKWARD_TITLE,
        author="Толстой, Лев",
        subfields=[
            Subfield("097", "a", "84.2"),
            Subfield("097", "b", "TOL", occ_num=1),
            Subfield("100", "a", 'Tolstoi, "Leo"', marc_ind1="1"),
            Subfield("245", "a", "Sota ja rauha\t/", marc_ind1="1", marc_ind2="0", occ_num=2),
            Subfield("245", "c", "Лев Толстой", marc_ind1="1", marc_ind2="0", occ_num=2, display_order=5),
        ],
        updated=LONG_AGO,
    )
    add_bib(conn, 101, title="Äänikirja", author=None, material_code="j", updated=LONG_AGO)
    add_bib(
        conn,
        102,
        title="",
        author="NA",
        material_code="zz",
        subfields=[Subfield("110", "a", "Yhteisö ry"), Subfield(None, None, "non-MARC note")],
        updated=LONG_AGO,
    )
    add_bib(
        conn,
        103,
        title="Highest bib id",
        author="Kivi, Aleksis",
        subfields=[Subfield("130", "a", "Uniform title"), Subfield("111", "a", "Conference")],
        updated=LONG_AGO,
    )
    for n in range(1, items + 1):
        add_item(
            conn,
            n,
            bibs=[bib_id(b) for b in LINKS.get(n, [100 + n % 4])],
            itype=None if n in NULL_ITYPE_ITEMS else n % 5,
            updated=LONG_AGO,
        )


REFERENCE_SQL = """
SELECT
    ir.record_id,
    (SELECT record_num FROM sierra_view.record_metadata m WHERE m.id = ir.record_id AND m.record_type_code = 'i'),
    (SELECT barcode FROM sierra_view.item_record_property p WHERE p.item_record_id = ir.record_id
     ORDER BY p.id LIMIT 1),
    b.bib,
    (SELECT record_num FROM sierra_view.record_metadata m WHERE m.id = b.bib AND m.record_type_code = 'b'),
    bp.best_author, bp.best_title,
    coalesce(ir.itype_code_num, %(fallback)s),
    (SELECT name FROM sierra_view.itype_property_myuser t WHERE t.code = ir.itype_code_num),
    bp.material_code,
    (SELECT name FROM sierra_view.material_property_myuser t WHERE t.code = bp.material_code),
    (SELECT max(content) FROM sierra_view.subfield s WHERE s.record_id = b.bib AND s.marc_tag = '097'),
    (SELECT json_agg(json_build_object('marc_tag', marc_tag, 'marc_ind1', marc_ind1, 'marc_ind2', marc_ind2,
                                       'field_type_code', field_type_code, 'tag', tag, 'content', content)
                     ORDER BY marc_tag, occ_num, varfield_id, display_order, tag, content)::text
     FROM sierra_view.subfield s
     WHERE s.record_id = b.bib AND s.marc_tag IN ('100', '110', '111', '130', '245'))
FROM sierra_view.item_record ir
LEFT JOIN LATERAL (SELECT max(bib_record_id) AS bib FROM sierra_view.bib_record_item_record_link l
                   WHERE l.item_record_id = ir.record_id) b ON true
LEFT JOIN LATERAL (SELECT * FROM sierra_view.bib_record_property p WHERE p.bib_record_id = b.bib
                   ORDER BY p.id LIMIT 1) bp ON true
ORDER BY ir.record_id
"""

# The backend parses with pandas defaults: a field that is exactly one of these arrives as NULL
# (a documented limitation the DAG does not work around).
PANDAS_NA_TOKENS = {
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "<NA>",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "None",
    "n/a",
    "nan",
    "null",
}


def expected_rows(conn: psycopg.Connection, fallback: int | None = 0) -> dict[int, dict]:
    """What the backend should hold, as the backend types it (ints, str, None for NULL or '')."""
    rows = {}
    for values in conn.execute(REFERENCE_SQL, {"fallback": fallback}):
        row = dict(zip(COLUMNS, values, strict=True))
        for key in ("item_number", "bib_number"):
            row[key] = None if row[key] is None else str(row[key])
        for key, value in row.items():
            if value in PANDAS_NA_TOKENS:
                row[key] = None
        if row["shelfmark_json"] is not None:
            row["shelfmark_json"] = json.loads(row["shelfmark_json"])
        rows[row["item_record_id"]] = row
    return rows


def stored_rows(items: dict[int, dict]) -> dict[int, dict]:
    """The backend's rows with shelfmark_json parsed (and checked to be compact, canonical JSON)."""
    rows = {}
    for key, item in items.items():
        row = {c: item[c] for c in COLUMNS}
        if row["shelfmark_json"] is not None:
            parsed = json.loads(row["shelfmark_json"])
            assert json.dumps(parsed, ensure_ascii=False, separators=(",", ":")) == row["shelfmark_json"]
            row["shelfmark_json"] = parsed
        rows[key] = row
    return rows


__all__ = ["LINKS", "build_catalogue", "expected_rows", "item_id", "stored_rows"]
