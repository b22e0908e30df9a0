"""PostgreSQL side of the visits pipeline: schema, load-control log, COPY loads, visitor metrics.

Takes a psycopg 3 connection in autocommit mode. Every transaction that writes the four tables
takes the advisory lock first (spec §6.1): methods that write on their own open such a
transaction (``locked_transaction``); the others run inside the caller's load transaction,
which took the lock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from psycopg import Connection, sql

from etlkit.common.sql import load_sql
from etlkit.visits.settings import VisitsSettings

log = logging.getLogger(__name__)

ADVISORY_LOCK_KEY = 7_310_202_401  # one writer at a time on the visits tables, whatever the run
ONCE_ONLY_STATUSES = ("LOADED", "COMPLETED", "REJECTED", "QUARANTINED")
# GIVEN_UP: an operator chose not to load these bytes (param give_up_files): quarantined with the reason.
LOAD_STATUSES = (*ONCE_ONLY_STATUSES, "FAILED", "DUPLICATE", "GIVEN_UP")
STATISTICS_COLUMNS = (
    "load_id",
    "source_file",
    "line_number",
    "email",
    "jyv",
    "badmail",
    "baja",
    "fecha_envio",
    "fecha_open",
    "opens",
    "opens_virales",
    "fecha_click",
    "clicks",
    "clicks_virales",
    "links",
    "ips",
    "navegadores",
    "plataformas",
)
ERROR_COLUMNS = ("load_id", "source_file", "line_number", "raw_line", "rule", "message")


@dataclass(frozen=True)
class LoadRecord:
    load_id: int
    status: str
    archive_name: str | None
    committed_at: datetime | None


@dataclass(frozen=True)
class FinishedLoad:
    file_name: str
    load_id: int
    status: str
    file_size: int
    remote_mtime: int | None
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    visits_loaded: int
    archive_name: str | None


class VisitsStore:
    def __init__(self, conn: Connection, config: VisitsSettings, timezone: str):
        self.conn = conn
        self.config = config
        self.timezone = timezone  # of the monthly view's months and of the archive names
        self.names = self._identifiers(config, timezone)
        self._streaming = False
        self._statistics_copy = None  # (context manager, Copy) while a streamed COPY is open

    @staticmethod
    def _identifiers(config: VisitsSettings, timezone: str) -> dict[str, sql.Composable]:
        names = {
            "schema": config.db_schema,
            "load_log": config.table_load_log,
            "statistics": config.table_statistics,
            "errors": config.table_errors,
            "visitor": config.table_visitor,
            "visitor_report": config.view_visitor_report,
            "monthly": config.view_monthly,
            "load_log_file_once": f"{config.table_load_log}_file_once",
            "statistics_email_open": f"{config.table_statistics}_email_open",
            "statistics_open": f"{config.table_statistics}_open",
        }
        composed: dict[str, sql.Composable] = {k: sql.Identifier(v) for k, v in names.items()}
        composed["tz"] = sql.Literal(timezone)
        return composed

    def _sql(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(**self.names)

    def _file_sql(self, name: str) -> sql.Composed:
        return self._sql(load_sql("visits", name))

    def _execute(self, text: str, params: Sequence[Any] | dict[str, Any] | None = None):
        return self.conn.execute(self._sql(text), params)

    # -- schema and period -------------------------------------------------------------

    def ensure_schema(self) -> None:
        with self.locked_transaction():
            self.conn.execute(self._file_sql("schema.sql"))
            self._admit_every_status()

    def _admit_every_status(self) -> None:
        """A ``load_log`` created before a status existed gets the check that admits it."""
        checks = self.conn.execute(
            "SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c"
            " JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
            " WHERE n.nspname = %s AND t.relname = %s AND c.contype = 'c'"
            " AND pg_get_constraintdef(c.oid) LIKE '%%(status%%'",
            (self.config.db_schema, self.config.table_load_log),
        ).fetchall()
        stale = [
            name for name, definition in checks if any(f"'{s}'" not in definition for s in LOAD_STATUSES)
        ]
        if not stale:
            return
        log.info("load_log: the status check now admits %s (was %s)", LOAD_STATUSES, stale)
        self.conn.execute(
            sql.SQL(
                "ALTER TABLE {schema}.{load_log} {drops}, ADD CONSTRAINT {name} CHECK (status IN ({statuses}))"
            ).format(
                schema=self.names["schema"],
                load_log=self.names["load_log"],
                drops=sql.SQL(", ").join(
                    sql.SQL("DROP CONSTRAINT {}").format(sql.Identifier(n)) for n in stale
                ),
                name=sql.Identifier(f"{self.config.table_load_log}_status_check"[:63]),
                statuses=sql.SQL(", ").join(map(sql.Literal, LOAD_STATUSES)),
            )
        )

    def lock(self) -> None:
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))

    @contextmanager
    def locked_transaction(self) -> Iterator[None]:
        """A transaction holding the visits lock until it ends (a savepoint inside the caller's)."""
        with self.conn.transaction():
            self.lock()
            yield

    def refresh_period_counters(self, reference_date: date) -> int:
        with self.locked_transaction():
            cursor = self.conn.execute(self._file_sql("refresh_period_counters.sql"), {"r": reference_date})
            return cursor.rowcount

    # -- load-control log --------------------------------------------------------------

    def find_once_only(self, file_name: str, sha256: str) -> LoadRecord | None:
        row = self._execute(
            "SELECT load_id, status, archive_name, committed_at FROM {schema}.{load_log}"
            " WHERE file_name = %s AND sha256 = %s AND status = ANY(%s)"
            " ORDER BY load_id DESC LIMIT 1",
            (file_name, sha256, list(ONCE_ONLY_STATUSES)),
        ).fetchone()
        return LoadRecord(*row) if row else None

    def name_seen_with_other_checksum(self, file_name: str, sha256: str) -> bool:
        row = self._execute(
            "SELECT 1 FROM {schema}.{load_log} WHERE file_name = %s AND sha256 <> %s"
            " AND status = ANY(%s) LIMIT 1",
            (file_name, sha256, list(ONCE_ONLY_STATUSES)),
        ).fetchone()
        return row is not None

    def insert_load(
        self, *, status: str, file: dict[str, Any], run: dict[str, Any], reason: str | None = None
    ):
        row = self._execute(
            "INSERT INTO {schema}.{load_log} (file_name, file_size, sha256, remote_mtime, status, reason,"
            " reference_date, dag_id, dag_run_id, started_at)"
            " VALUES (%(file_name)s, %(file_size)s, %(sha256)s, %(remote_mtime)s, %(status)s, %(reason)s,"
            " %(reference_date)s, %(dag_id)s, %(dag_run_id)s, %(started_at)s) RETURNING load_id",
            {**file, **run, "status": status, "reason": reason},
        ).fetchone()
        return row[0]

    def mark_rejected(self, load_id: int, reason: str, encoding: str, column2_header: str | None) -> datetime:
        return self._execute(
            "UPDATE {schema}.{load_log} SET status = 'REJECTED', reason = %s, encoding = %s,"
            " column2_header = %s, committed_at = clock_timestamp() WHERE load_id = %s RETURNING committed_at",
            (reason, encoding, column2_header, load_id),
        ).fetchone()[0]

    def mark_loaded(self, load_id: int, counts: dict[str, Any]) -> datetime:
        return self._execute(
            "UPDATE {schema}.{load_log} SET rows_read = %(rows_read)s, rows_loaded = %(rows_loaded)s,"
            " rows_rejected = %(rows_rejected)s, visits_loaded = %(visits_loaded)s, encoding = %(encoding)s,"
            " column2_header = %(column2_header)s, committed_at = clock_timestamp()"
            " WHERE load_id = %(load_id)s RETURNING committed_at",
            {**counts, "load_id": load_id},
        ).fetchone()[0]

    def insert_duplicate(self, *, file: dict[str, Any], run: dict[str, Any], reason: str) -> int:
        with self.locked_transaction():
            return self.insert_load(status="DUPLICATE", file=file, run=run, reason=reason)

    def mark_archived(self, load_id: int, archive_name: str) -> None:
        with self.locked_transaction():
            self._execute(
                "UPDATE {schema}.{load_log} SET archive_name = %s,"
                " archived_at = coalesce(archived_at, now()) WHERE load_id = %s",
                (archive_name, load_id),
            )

    def mark_source_deleted(self, load_id: int) -> None:
        with self.locked_transaction():
            self._execute(
                "UPDATE {schema}.{load_log} SET source_deleted_at = coalesce(source_deleted_at, now())"
                " WHERE load_id = %s",
                (load_id,),
            )

    def mark_finished(self, load_id: int) -> str:
        with self.locked_transaction():
            return self._execute(
                "UPDATE {schema}.{load_log} SET finished_at = now(),"
                " status = CASE status WHEN 'LOADED' THEN 'COMPLETED' WHEN 'REJECTED' THEN 'QUARANTINED'"
                " ELSE status END WHERE load_id = %s RETURNING status",
                (load_id,),
            ).fetchone()[0]

    _CLOSE_GONE = (
        "UPDATE {schema}.{load_log} SET finished_at = now(),"
        " source_deleted_at = coalesce(source_deleted_at, now()),"
        " status = CASE status WHEN 'LOADED' THEN 'COMPLETED' WHEN 'REJECTED' THEN 'QUARANTINED' ELSE status END"
        " WHERE status IN ('LOADED', 'REJECTED', 'GIVEN_UP') AND finished_at IS NULL"
        " AND archive_name IS NOT NULL AND "
    )

    def reconcile_deleted_sources(self, remote_names: Iterable[str]) -> int:
        """Close ``LOADED``/``REJECTED``/``GIVEN_UP`` loads whose archive exists and whose file is gone."""
        with self.locked_transaction():
            return self._execute(
                self._CLOSE_GONE + "NOT (file_name = ANY(%s))", (list(remote_names),)
            ).rowcount

    def close_loads_of_gone_file(self, file_name: str) -> int:
        """The same for one file found gone (a retry after the source was already deleted)."""
        with self.locked_transaction():
            return self._execute(self._CLOSE_GONE + "file_name = %s", (file_name,)).rowcount

    def give_up(self, *, file: dict[str, Any], run: dict[str, Any], reason: str) -> LoadRecord:
        """The ``GIVEN_UP`` row of these bytes: the unfinished one an earlier try left, else a new one."""
        with self.locked_transaction():
            row = self._execute(
                "SELECT load_id, status, archive_name, committed_at FROM {schema}.{load_log}"
                " WHERE file_name = %s AND sha256 = %s AND status = 'GIVEN_UP' AND finished_at IS NULL"
                " ORDER BY load_id DESC LIMIT 1",
                (file["file_name"], file["sha256"]),
            ).fetchone()
            if row:
                return LoadRecord(*row)
            load_id = self.insert_load(status="GIVEN_UP", file=file, run=run, reason=reason)
            committed_at = self._execute(
                "UPDATE {schema}.{load_log} SET committed_at = clock_timestamp() WHERE load_id = %s"
                " RETURNING committed_at",
                (load_id,),
            ).fetchone()[0]
        return LoadRecord(load_id, "GIVEN_UP", None, committed_at)

    def given_up_names(self, file_names: Iterable[str]) -> set[str]:
        """Which of ``file_names`` have been given up (by any run)."""
        rows = self._execute(
            "SELECT DISTINCT file_name FROM {schema}.{load_log} WHERE status = 'GIVEN_UP' AND file_name = ANY(%s)",
            (list(file_names),),
        ).fetchall()
        return {row[0] for row in rows}

    def record_failure(self, *, file: dict[str, Any], run: dict[str, Any], error: BaseException) -> None:
        """Best effort, in its own short transaction: the attempt was rolled back."""
        reason = f"{type(error).__name__}: {error}"[:2000]
        try:
            with self.locked_transaction():
                load_id = self.insert_load(status="FAILED", file=file, run=run, reason=reason)
                self._execute(
                    "UPDATE {schema}.{load_log} SET finished_at = now() WHERE load_id = %s", (load_id,)
                )
        except Exception:
            log.exception("could not record the FAILED load of %s", file.get("file_name"))

    # -- data --------------------------------------------------------------------------

    @contextmanager
    def statistics_stream(self) -> Iterator[None]:
        """Keep one ``COPY ... FROM STDIN`` into statistics open while a file's records stream in,
        so the server ingests one batch while the client validates the next. Writing errors ends
        it (one COPY at a time per connection); the next statistics batch opens a new one."""
        self._streaming = True
        try:
            yield
        except BaseException as exc:
            self._close_statistics_copy(exc)
            raise
        finally:
            self._streaming = False
        self._close_statistics_copy(None)

    def _close_statistics_copy(self, exc: BaseException | None) -> None:
        if self._statistics_copy is not None:
            manager, self._statistics_copy = self._statistics_copy[0], None
            manager.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)

    def copy_statistics(self, rows: list[tuple]) -> None:
        if not rows:
            return
        if not self._streaming:
            self._copy(self.names["statistics"], STATISTICS_COLUMNS, rows)
            return
        if self._statistics_copy is None:
            manager = self.conn.cursor().copy(
                self._copy_statement(self.names["statistics"], STATISTICS_COLUMNS)
            )
            self._statistics_copy = (manager, manager.__enter__())
        write_row = self._statistics_copy[1].write_row
        for row in rows:
            write_row(row)

    def copy_errors(self, rows: list[tuple]) -> None:
        if rows:
            self._close_statistics_copy(None)
            self._copy(self.names["errors"], ERROR_COLUMNS, rows)

    def _copy_statement(self, table: sql.Composable, columns: Sequence[str]) -> sql.Composed:
        return sql.SQL("COPY {schema}.{table} ({columns}) FROM STDIN").format(
            schema=self.names["schema"], table=table, columns=sql.SQL(", ").join(map(sql.Identifier, columns))
        )

    def _copy(self, table: sql.Composable, columns: Sequence[str], rows: list[tuple]) -> None:
        with self.conn.cursor().copy(self._copy_statement(table, columns)) as copy:
            for row in rows:
                copy.write_row(row)

    def count_out_of_order_visitors(self, load_id: int) -> int:
        return self.conn.execute(
            self._file_sql("out_of_order_visitors.sql"), {"load_id": load_id}
        ).fetchone()[0]

    def upsert_visitors(self, load_id: int, reference_date: date) -> int:
        cursor = self.conn.execute(
            self._file_sql("upsert_visitors.sql"), {"load_id": load_id, "r": reference_date}
        )
        return cursor.rowcount

    def finished_loads_of_run(self, dag_run_id: str) -> dict[str, FinishedLoad]:
        """The latest finished outcome of each file this run handled (what a retry may skip)."""
        rows = self._execute(
            "SELECT DISTINCT ON (file_name) file_name, load_id, status, file_size,"
            " extract(epoch FROM remote_mtime)::bigint, rows_read, rows_loaded, rows_rejected,"
            " visits_loaded, archive_name FROM {schema}.{load_log}"
            " WHERE dag_run_id = %s AND finished_at IS NOT NULL"
            " AND status IN ('COMPLETED', 'QUARANTINED', 'DUPLICATE', 'GIVEN_UP')"
            " ORDER BY file_name, load_id DESC",
            (dag_run_id,),
        ).fetchall()
        return {row[0]: FinishedLoad(*row) for row in rows}

    # -- reporting ---------------------------------------------------------------------

    def run_status_counts(self, dag_run_id: str) -> dict[str, int]:
        rows = self._execute(
            "SELECT status, count(*) FROM {schema}.{load_log} WHERE dag_run_id = %s GROUP BY status",
            (dag_run_id,),
        ).fetchall()
        return dict(rows)

    def stale_pending_loads(self, older_than_hours: int = 24) -> list[tuple[int, str, str]]:
        return self._execute(
            "SELECT load_id, file_name, status FROM {schema}.{load_log}"
            " WHERE status IN ('LOADED', 'REJECTED') AND started_at < now() - make_interval(hours => %s)"
            " ORDER BY load_id",
            (older_than_hours,),
        ).fetchall()
