"""A miniature, realistic ``sierra_view`` in PostgreSQL for the Sierra sync tests, demo and benchmark.

Record ids follow Sierra's convention (``ascii(type) << 32 | record_num``). The generated data has
items with zero, one and several bibs, NULL itypes, titles with tabs, quotes, CR/LF and non-Latin
scripts, MARC 097/100/110/111/130/245 subfields with blank indicators, bibs without any 1XX/245
field, and ``record_last_updated_gmt`` spread over time. Bulk rows are generated set-based in SQL
(``generate_series``), so a million items take seconds, not minutes.

``python -m dev.sierra_data DBNAME [--items N]`` fills an existing database.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from dev import pgdb

ITEM_BASE = ord("i") << 32
BIB_BASE = ord("b") << 32
READER_ROLE = "sierra_sync_reader"

# Values that have broken naive TSV writers: delimiters, quotes, line breaks, non-Latin scripts,
# pandas NA tokens, leading/trailing blanks.
AWKWARD_TITLES = [
    "Tab\tinside title",
    "He said \"hello\" / she said 'bye'",
    "Line one\nline two",
    "Carriage\rreturn only",
    "Windows\r\nline end",
    "Äänikirja: ölyä ja öitä",
    "Война и мир",
    "東京物語 : 映画の本",
    "Ελληνικά γράμματα",
    "  leading and trailing blanks  ",
    "Backslash \\ and \\t literal",
    '"Quoted at both ends"',
]
PLAIN_TITLES = ["Seitsemän veljestä", "The hobbit", "Kalevala", "Moby Dick", "Pride and prejudice"]
AUTHORS = ["Kivi, Aleksis", "Tolkien, J. R. R.", "Толстой, Лев", "Lönnrot, Elias", None, "Austen, Jane"]

SCHEMA_DDL = """
CREATE SCHEMA IF NOT EXISTS sierra_view;
CREATE TABLE sierra_view.record_metadata (
    id bigint, record_type_code char(1), record_num integer,
    record_last_updated_gmt timestamptz, creation_date_gmt timestamptz,
    deletion_date_gmt date, campus_code varchar(5) DEFAULT ''
);
CREATE TABLE sierra_view.item_record (
    id bigint, record_id bigint, itype_code_num smallint, location_code varchar(5),
    item_status_code char(1), is_suppressed boolean
);
CREATE TABLE sierra_view.item_record_property (
    id bigint, item_record_id bigint, barcode varchar(1000), call_number varchar(1000)
);
CREATE TABLE sierra_view.bib_record_item_record_link (
    id bigint, bib_record_id bigint, item_record_id bigint, items_display_order integer,
    bibs_display_order integer
);
CREATE TABLE sierra_view.bib_record_property (
    id bigint, bib_record_id bigint, best_title varchar(1000), best_author varchar(1000),
    material_code varchar(3), bib_level_code char(1), publish_year integer
);
CREATE TABLE sierra_view.itype_property_myuser (code integer, display_order integer, name varchar(255));
CREATE TABLE sierra_view.material_property_myuser (
    code varchar(3), display_order integer, is_public boolean, name varchar(255)
);
CREATE TABLE sierra_view.subfield (
    record_id bigint, varfield_id bigint, field_type_code char(1), marc_tag varchar(3),
    marc_ind1 char(1), marc_ind2 char(1), occ_num integer, display_order integer, tag char(1),
    content varchar(20001)
);
INSERT INTO sierra_view.itype_property_myuser VALUES
    (0, 1, 'Kirja'), (1, 2, 'Lehti'), (2, 3, 'CD-levy'), (3, 4, 'DVD "elokuva"'), (4, 5, 'Ноты');
INSERT INTO sierra_view.material_property_myuser VALUES
    ('a', 1, true, 'Kirja'), ('j', 2, true, 'Musiikkiäänite'), ('g', 3, true, 'Video'), ('s', 4, true, 'Lehti');
"""


def item_id(record_num: int) -> int:
    return ITEM_BASE + record_num


def bib_id(record_num: int) -> int:
    return BIB_BASE + record_num


@dataclass(frozen=True)
class Subfield:
    marc_tag: str | None
    tag: str | None
    content: str
    marc_ind1: str = " "
    marc_ind2: str = " "
    occ_num: int = 0
    display_order: int = 0
    field_type_code: str = "a"


def create_schema(conn: psycopg.Connection) -> None:
    conn.execute("DROP SCHEMA IF EXISTS sierra_view CASCADE")
    conn.execute(SCHEMA_DDL)


def grant_reader(conn: psycopg.Connection, role: str = READER_ROLE) -> str:
    """A login role with SELECT on ``sierra_view`` only, as the spec requires of the DAG's role."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if not exists:
        try:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        except psycopg.errors.DuplicateObject:  # created concurrently by another session
            pass
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA sierra_view TO {}").format(sql.Identifier(role)))
    conn.execute(
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA sierra_view TO {}").format(sql.Identifier(role))
    )
    return role


def _add_record_metadata(
    conn: psycopg.Connection, rid: int, record_type: str, record_num: int, updated: datetime | None
) -> None:
    """The record's row in ``record_metadata``, created and updated at ``updated`` (default now)."""
    updated = updated or datetime.now(UTC)
    conn.execute(
        "INSERT INTO sierra_view.record_metadata VALUES (%s, %s, %s, %s, %s, NULL, '')",
        (rid, record_type, record_num, updated, updated),
    )


def add_bib(
    conn: psycopg.Connection,
    record_num: int,
    *,
    title: str | None,
    author: str | None = None,
    material_code: str | None = "a",
    subfields: Iterable[Subfield] = (),
    updated: datetime | None = None,
) -> int:
    rid = bib_id(record_num)
    _add_record_metadata(conn, rid, "b", record_num, updated)
    conn.execute(
        "INSERT INTO sierra_view.bib_record_property VALUES (%s, %s, %s, %s, %s, 'm', 2001)",
        (rid, rid, title, author, material_code),
    )
    for position, field in enumerate(subfields):
        conn.execute(
            "INSERT INTO sierra_view.subfield VALUES (%s, %s, 'a', %s, %s, %s, %s, %s, %s, %s)",
            (
                rid,
                rid * 10 + field.occ_num,
                field.marc_tag,
                field.marc_ind1,
                field.marc_ind2,
                field.occ_num,
                field.display_order or position,
                field.tag,
                field.content,
            ),
        )
    return rid


def add_item(
    conn: psycopg.Connection,
    record_num: int,
    *,
    bibs: Iterable[int] = (),
    itype: int | None = 0,
    barcode: str | None = None,
    updated: datetime | None = None,
) -> int:
    rid = item_id(record_num)
    _add_record_metadata(conn, rid, "i", record_num, updated)
    conn.execute(
        "INSERT INTO sierra_view.item_record VALUES (%s, %s, %s, 'main', '-', false)", (rid, rid, itype)
    )
    conn.execute(
        "INSERT INTO sierra_view.item_record_property VALUES (%s, %s, %s, NULL)",
        (rid, rid, barcode if barcode is not None else f"BC{record_num:09d}"),
    )
    for order, bib in enumerate(bibs):
        conn.execute(
            "INSERT INTO sierra_view.bib_record_item_record_link VALUES (%s, %s, %s, %s, 0)",
            (rid * 10 + order, bib, rid, order),
        )
    return rid


def touch(conn: psycopg.Connection, record_id: int, when: datetime) -> None:
    conn.execute(
        "UPDATE sierra_view.record_metadata SET record_last_updated_gmt = %s WHERE id = %s", (when, record_id)
    )


def delete_item(conn: psycopg.Connection, record_id: int, when: datetime) -> None:
    """Sierra keeps the metadata row of a deleted record, with its deletion date, but no item row."""
    conn.execute("DELETE FROM sierra_view.item_record WHERE record_id = %s", (record_id,))
    conn.execute(
        "UPDATE sierra_view.record_metadata SET deletion_date_gmt = %s, record_last_updated_gmt = %s"
        " WHERE id = %s",
        (when.date(), when, record_id),
    )


BULK_SQL = """
INSERT INTO sierra_view.record_metadata
SELECT %(bib_base)s + n, 'b', n, ts, ts - interval '3 years', NULL, ''
FROM (SELECT n, %(now)s::timestamptz - (n %% 700) * interval '1 day' - (n %% 86400) * interval '1 second' AS ts
      FROM generate_series(1, %(bibs)s) n) g;

INSERT INTO sierra_view.bib_record_property
SELECT %(bib_base)s + n, %(bib_base)s + n,
       CASE WHEN n %% 7 = 0 THEN (%(awkward)s::text[])[1 + n %% array_length(%(awkward)s::text[], 1)]
            ELSE (%(plain)s::text[])[1 + n %% array_length(%(plain)s::text[], 1)] || ' ' || n END,
       (%(authors)s::text[])[1 + n %% array_length(%(authors)s::text[], 1)],
       (ARRAY['a', 'j', 'g', 's', 'x'])[1 + n %% 5], 'm', 1900 + n %% 125
FROM generate_series(1, %(bibs)s) n;

-- 097 classification (two subfields on every third bib), 1XX main entry and 245 title.
INSERT INTO sierra_view.subfield
SELECT %(bib_base)s + n, (%(bib_base)s + n) * 10 + f.occ, 'a', f.marc_tag, f.ind1, f.ind2, f.occ, f.ord,
       f.tag, f.content
FROM generate_series(1, %(bibs)s) n
CROSS JOIN LATERAL (VALUES
    ('097', ' ', ' ', 0, 0, 'a', (n %% 100)::text || '.' || (n %% 7)::text),
    ('097', ' ', ' ', 0, 1, 'b', CASE WHEN n %% 3 = 0 THEN 'ZZ ' || n END),
    (CASE n %% 4 WHEN 0 THEN '100' WHEN 1 THEN '110' WHEN 2 THEN '111' ELSE '130' END,
        '1', ' ', 1, 0, 'a', 'Tekijä ' || n || E',\\t"nimi"'),
    ('245', '1', '0', 2, 0, 'a', 'Nimeke ' || n || ' :'),
    ('245', '1', '0', 2, 1, 'b', 'alaotsikko / Автор')
) AS f(marc_tag, ind1, ind2, occ, ord, tag, content)
WHERE n %% 11 <> 0 AND f.content IS NOT NULL;

INSERT INTO sierra_view.record_metadata
SELECT %(item_base)s + n, 'i', n, %(now)s::timestamptz - (n %% 500) * interval '1 day'
       - (n %% 3600) * interval '1 second', %(now)s::timestamptz - interval '2 years', NULL, ''
FROM generate_series(1, %(items)s) n;

INSERT INTO sierra_view.item_record
SELECT %(item_base)s + n, %(item_base)s + n, CASE WHEN n %% 97 = 0 THEN NULL ELSE n %% 5 END,
       'main', '-', n %% 13 = 0
FROM generate_series(1, %(items)s) n;

INSERT INTO sierra_view.item_record_property
SELECT %(item_base)s + n, %(item_base)s + n, 'BC' || lpad(n::text, 9, '0'), 'CALL ' || n
FROM generate_series(1, %(items)s) n;

-- One bib per item, none for every 50th item, three bibs for every 40th item. As in a library's
-- catalogue, most items are created with their bib, so item ids follow bib ids (two items a bib);
-- every tenth item is a copy added later to an older bib anywhere in the range, as are extra bibs.
INSERT INTO sierra_view.bib_record_item_record_link
SELECT (%(item_base)s + n) * 10 + k,
       %(bib_base)s + 1 + (CASE WHEN k = 0 AND n %% 10 <> 0 THEN n / 2 ELSE n * 7 + k * 13 END) %% %(bibs)s,
       %(item_base)s + n, k, 0
FROM generate_series(1, %(items)s) n
CROSS JOIN LATERAL generate_series(0, CASE WHEN n %% 40 = 0 THEN 2 ELSE 0 END) k
WHERE n %% 50 <> 0;
"""


def generate(conn: psycopg.Connection, items: int, *, now: datetime | None = None) -> None:
    """Bulk-fill ``sierra_view`` (already created) with ``items`` items and about half as many bibs."""
    bibs = max(items // 2, 1)
    params = {
        "item_base": ITEM_BASE,
        "bib_base": BIB_BASE,
        "items": items,
        "bibs": bibs,
        "now": now or datetime.now(UTC),
        "awkward": AWKWARD_TITLES,
        "plain": PLAIN_TITLES,
        "authors": AUTHORS,
    }
    for statement in BULK_SQL.split(";\n\n"):
        conn.execute(statement, params)
    conn.execute("ANALYZE")


def fill_database(dbname: str, items: int) -> None:
    with psycopg.connect(pgdb.dsn(dbname), autocommit=True) as conn:
        create_schema(conn)
        generate(conn, items)
        grant_reader(conn)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dbname", help="an existing database on the local PostgreSQL")
    parser.add_argument("--items", type=int, default=10_000)
    args = parser.parse_args(argv)
    fill_database(args.dbname, args.items)
    print(f"sierra_view in {args.dbname}: {args.items} items")


if __name__ == "__main__":
    main()
