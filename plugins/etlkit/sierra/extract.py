"""Extraction from a Sierra snapshot: the mode's selection, its facts, and COPY → gzip TSV on disk.

Plain psycopg: the hook supplies the connection, the benchmark can too.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import IsolationLevel
from psycopg import sql as pgsql

from etlkit.common.sql import load_sql
from etlkit.sierra.protocol import SYNC_FULL

PIPELINE = "sierra"
# Level 1 is much faster than 6 for ~15 % more bytes; the backend accepts any level.
GZIP_LEVEL = 1
# PostgreSQL's CSV output quotes exactly the fields holding a tab, '"', LF or CR (CSV "minimal"),
# including a bare CR, which Python 3.11's csv writer leaves unquoted.
COPY_OPTIONS = pgsql.SQL("WITH (FORMAT csv, DELIMITER E'\\t', HEADER true, NULL '', ENCODING 'UTF8')")


@dataclass(frozen=True)
class Selection:
    """Which items a batch holds: ``SYNC_FULL`` (keyset page) or ``SYNC_CHANGES`` (since a bound)."""

    mode: str
    last_synced_id: int | None = None
    batch_size: int | None = None
    since: datetime | None = None


@dataclass(frozen=True)
class BatchStats:
    item_count: int
    max_item_id: int | None
    null_itypes: int
    first_null_itype_ids: list[int]


def _selection_query(selection: Selection) -> tuple[pgsql.SQL, dict]:
    if selection.mode == SYNC_FULL:
        params = {"last_synced_id": selection.last_synced_id, "batch_size": selection.batch_size}
        return pgsql.SQL(load_sql(PIPELINE, "full_item_ids.sql")), params
    return pgsql.SQL(load_sql(PIPELINE, "changed_item_ids.sql")), {"since": selection.since}


def item_rows_query(selection: Selection) -> tuple[pgsql.Composed, dict]:
    ids, params = _selection_query(selection)
    return pgsql.SQL(load_sql(PIPELINE, "item_rows.sql")).format(selected_item_ids=ids), params


class SierraSnapshot:
    """Queries inside one read-only transaction: every count agrees with the rows copied."""

    def __init__(self, conn: psycopg.Connection, db_now: datetime, timezone: str):
        self.conn = conn
        self.db_now = db_now
        self.timezone = timezone

    def count_clamped(self, start: datetime, floor: datetime) -> tuple[int, int, datetime | None]:
        row = self.conn.execute(load_sql(PIPELINE, "clamped_records.sql"), {"start": start, "floor": floor})
        return row.fetchone()

    def batch_stats(self, selection: Selection) -> BatchStats:
        ids, params = _selection_query(selection)
        query = pgsql.SQL(load_sql(PIPELINE, "batch_stats.sql")).format(selected_item_ids=ids)
        count, max_id, null_itypes, first_ids = self.conn.execute(query, params).fetchone()
        return BatchStats(count, max_id, null_itypes, list(first_ids or []))

    def copy_rows(self, selection: Selection, path: Path, itype_null_fallback: int | None) -> int:
        """Stream the batch as gzip TSV to ``path`` (rewritten from the start); returns data rows."""
        rows_query, params = item_rows_query(selection)
        statement = pgsql.SQL("COPY ({}) TO STDOUT {}").format(rows_query, COPY_OPTIONS)
        params = {**params, "itype_null_fallback": itype_null_fallback}
        with self.conn.cursor() as cur, gzip.open(path, "wb", compresslevel=GZIP_LEVEL) as out:
            # COPY takes no server-side parameters: psycopg binds these client-side as typed literals.
            with cur.copy(statement, params) as copy:
                for chunk in copy:
                    out.write(chunk)
            return cur.rowcount


@contextmanager
def open_snapshot(conn: psycopg.Connection, statement_timeout_seconds: float) -> Iterator[SierraSnapshot]:
    """Own ``conn``: one REPEATABLE READ, READ ONLY transaction whose first statement reads the DB's
    ``now()`` and ``TimeZone`` (never changed); the connection is closed on every path."""
    try:
        conn.autocommit = False
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            db_now, timezone = conn.execute("SELECT now(), current_setting('TimeZone')").fetchone()
            conn.execute(
                "SELECT set_config('statement_timeout', %s, true)",
                (f"{int(statement_timeout_seconds * 1000)}ms",),
            )
            yield SierraSnapshot(conn, db_now, timezone)
    finally:
        conn.close()
