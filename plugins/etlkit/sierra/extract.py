"""Extraction from a Sierra snapshot: the mode's selection, its facts, and COPY → gzip TSV on disk.

The selection runs once per batch: its result goes into a session-local temporary table inside the
snapshot, and the batch's facts, cut points and COPY read that table.

When ``extract_parallelism`` is configured, a large batch is cut into item-id ranges copied side by side, each on its own connection that
imports the first connection's snapshot (``pg_export_snapshot``, as ``pg_dump --jobs`` does), so
every part reads the same data. The parts reach the gzip file in id order, as one gzip stream.

Plain psycopg: the hook supplies the connections, the benchmark can too.
"""

from __future__ import annotations

import gzip
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import IsolationLevel
from psycopg import sql as pgsql

from etlkit.common.errors import ConfigurationError
from etlkit.common.sql import load_sql
from etlkit.sierra.protocol import SYNC_FULL

log = logging.getLogger(__name__)

PIPELINE = "sierra"
# Level 1 is much faster than 6 for ~15 % more bytes; the backend accepts any level.
GZIP_LEVEL = 1


# PostgreSQL's CSV output quotes exactly the fields holding a tab, '"', LF or CR (CSV "minimal"),
# including a bare CR, which Python 3.11's csv writer leaves unquoted. Only the first part has the header.
def copy_options(header: bool) -> pgsql.Composed:
    return pgsql.SQL("WITH (FORMAT csv, DELIMITER E'\\t', HEADER {}, NULL '', ENCODING 'UTF8')").format(
        pgsql.SQL("true" if header else "false")
    )


COPY_OPTIONS = copy_options(header=True)
# COPY sends one message per row: rows are gathered into blocks before they cross threads.
BLOCK_BYTES = 1 << 18
# Blocks a part may hold while an earlier part is being written: memory is bounded by parts x this.
QUEUED_BLOCKS_PER_PART = 4
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
JIT_SINCE_SERVER_VERSION = 110000

Connect = Callable[[], psycopg.Connection]


@dataclass(frozen=True)
class Selection:
    """Which items a batch holds: ``SYNC_FULL`` (keyset page) or ``SYNC_CHANGES`` (since a bound)."""

    mode: str
    last_synced_id: int | None = None
    batch_size: int | None = None
    since: datetime | None = None


@dataclass(frozen=True)
class IdRange:
    """Item ids ``after < id <= through``: one part of a batch."""

    after: int = BIGINT_MIN
    through: int = BIGINT_MAX


@dataclass(frozen=True)
class BatchStats:
    item_count: int
    max_item_id: int | None
    null_itypes: int
    first_null_itype_ids: list[int]


def part_count(item_count: int, parallelism: int, min_items_per_part: int) -> int:
    """How many connections a batch of ``item_count`` items is worth."""
    return max(1, min(parallelism, item_count // min_items_per_part))


def id_ranges(cut_ids: list[int], last_id: int) -> list[IdRange]:
    """Consecutive ranges ending at each cut id and the last one at ``last_id``, the batch's largest
    id: no range reaches past the batch, so a full sync's LIMIT keeps cutting the same page."""
    ends = sorted({cut for cut in cut_ids if cut < last_id}) + [last_id]
    return [IdRange(after, through) for after, through in zip([BIGINT_MIN, *ends[:-1]], ends, strict=True)]


def _selection_query(selection: Selection, part: IdRange = IdRange()) -> tuple[pgsql.SQL, dict]:
    params = {"part_after_id": part.after, "part_through_id": part.through}
    if selection.mode == SYNC_FULL:
        params |= {"last_synced_id": selection.last_synced_id, "batch_size": selection.batch_size}
        return pgsql.SQL(load_sql(PIPELINE, "full_item_ids.sql")), params
    return pgsql.SQL(load_sql(PIPELINE, "changed_item_ids.sql")), params | {"since": selection.since}


def item_rows_query(selection: Selection, part: IdRange = IdRange()) -> tuple[pgsql.Composed, dict]:
    """The rows of a selection computed in place (connections that cannot see the temp table)."""
    ids, params = _selection_query(selection, part)
    return pgsql.SQL(load_sql(PIPELINE, "item_rows.sql")).format(selected_item_ids=ids), params


def _materialised_query(part: IdRange = IdRange()) -> tuple[pgsql.SQL, dict]:
    params = {"part_after_id": part.after, "part_through_id": part.through}
    return pgsql.SQL(load_sql(PIPELINE, "materialised_item_ids.sql")), params


def materialised_rows_query(part: IdRange = IdRange()) -> tuple[pgsql.Composed, dict]:
    """The rows of the batch's materialised selection (the snapshot's own connection)."""
    ids, params = _materialised_query(part)
    return pgsql.SQL(load_sql(PIPELINE, "item_rows.sql")).format(selected_item_ids=ids), params


def _blocks(copy: psycopg.Copy) -> Iterator[bytes]:
    block = bytearray()
    for chunk in copy:
        block += chunk
        if len(block) >= BLOCK_BYTES:
            yield bytes(block)
            block.clear()
    if block:
        yield bytes(block)


class _PartCopy(threading.Thread):
    """Runs one part's COPY on its own connection and hands its blocks over a bounded queue."""

    END = object()

    def __init__(self, conn: psycopg.Connection, statement: pgsql.Composed, params: dict):
        super().__init__(name="sierra-copy-part", daemon=True)
        self.conn, self.statement, self.params = conn, statement, params
        self.blocks: queue.Queue = queue.Queue(maxsize=QUEUED_BLOCKS_PER_PART)
        self.rows = 0
        self.error: BaseException | None = None
        self.drained = False

    def run(self) -> None:
        try:
            with self.conn.cursor() as cur:
                # COPY takes no server-side parameters: psycopg binds these client-side as typed literals.
                with cur.copy(self.statement, self.params) as copy:
                    for block in _blocks(copy):
                        self.blocks.put(block)
                self.rows = cur.rowcount
        except BaseException as exc:  # handed to the writing thread, which raises it
            self.error = exc
        finally:
            self.blocks.put(self.END)

    def write_to(self, out) -> int:
        while (block := self.blocks.get()) is not self.END:
            out.write(block)
        self.drained = True
        if self.error is not None:
            raise self.error
        return self.rows

    def abandon(self) -> None:
        """Stop a part whose output is no longer wanted: cancel the query, drop what it sends."""
        if not self.drained and self.is_alive():
            self.conn.cancel_safe()
            while self.blocks.get() is not self.END:
                pass
        self.join()


class SierraSnapshot:
    """Queries inside one read-only transaction: every count agrees with the rows copied.

    ``statement_timeout_ms`` bounds the attempt's statements together: each long statement gets
    what is left of it, so one extraction attempt never outlasts the setting (the run's worst case
    is computed from it, see ``etlkit.sierra.budget``).
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        db_now: datetime,
        timezone: str,
        *,
        statement_timeout_ms: int,
        connect: Connect | None = None,
    ):
        self.conn = conn
        self.db_now = db_now
        self.timezone = timezone
        self.statement_timeout_ms = statement_timeout_ms
        self.connect = connect
        self.materialised: Selection | None = None
        self.deadline = time.monotonic() + statement_timeout_ms / 1000

    def remaining_ms(self) -> int:
        return max(1, round((self.deadline - time.monotonic()) * 1000))  # 0 would mean no timeout

    def _arm(self) -> None:
        if time.monotonic() >= self.deadline:  # a 1 ms timeout would not stop a quick statement
            raise psycopg.errors.QueryCanceled(
                "canceling statement due to statement timeout: the extraction attempt used up "
                "statement_timeout_seconds"
            )
        _set_statement_timeout(self.conn, self.remaining_ms())

    def count_clamped(self, start: datetime, floor: datetime) -> tuple[int, int, datetime | None]:
        self._arm()
        row = self.conn.execute(load_sql(PIPELINE, "clamped_records.sql"), {"start": start, "floor": floor})
        return row.fetchone()

    def materialise(self, selection: Selection) -> None:
        """Run the selection once into the session's temp table; later reads of it are cheap."""
        if self.materialised == selection:
            return
        if self.materialised is not None:
            raise ValueError("a snapshot holds one batch's selection")
        ids, params = _selection_query(selection)
        self._arm()
        self.conn.execute(
            pgsql.SQL(load_sql(PIPELINE, "materialise_selection.sql")).format(selected_item_ids=ids), params
        )
        self.conn.execute("ANALYZE pg_temp.sierra_selected_items")  # row count for the planner
        self.materialised = selection

    def batch_stats(self, selection: Selection) -> BatchStats:
        self.materialise(selection)
        ids, params = _materialised_query()
        query = pgsql.SQL(load_sql(PIPELINE, "batch_stats.sql")).format(selected_item_ids=ids)
        self._arm()
        count, max_id, null_itypes, first_ids = self.conn.execute(query, params).fetchone()
        return BatchStats(count, max_id, null_itypes, list(first_ids or []))

    def copy_rows(
        self, selection: Selection, path: Path, itype_null_fallback: int | None, parts: int = 1
    ) -> int:
        """Stream the batch as gzip TSV to ``path`` (rewritten from the start); returns data rows.

        ``parts`` > 1 copies that many id ranges of nearly equal size side by side.
        """
        self.materialise(selection)
        ranges = (self._part_ranges(parts) if parts > 1 and self.connect else []) or [IdRange()]
        snapshot_id = self._export_snapshot() if len(ranges) > 1 else None
        self._arm()
        with ExitStack() as stack:
            joined = [stack.enter_context(self._joined_connection(snapshot_id)) for _ in ranges[1:]]
            conns = [self.conn, *joined]
            readers = [
                self._part_reader(conn, selection, part, itype_null_fallback, header=index == 0)
                for index, (conn, part) in enumerate(zip(conns, ranges, strict=True))
            ]
            if len(readers) > 1:
                log.info("copying %s parts side by side: %s", len(readers), ranges)
            for reader in readers:
                reader.start()
            try:
                with gzip.open(path, "wb", compresslevel=GZIP_LEVEL) as out:
                    return sum(reader.write_to(out) for reader in readers)
            finally:
                for reader in readers:
                    reader.abandon()

    def _part_ranges(self, parts: int) -> list[IdRange]:
        ids, params = _materialised_query()
        query = pgsql.SQL(load_sql(PIPELINE, "part_cut_ids.sql")).format(selected_item_ids=ids)
        fractions = [index / parts for index in range(1, parts)]
        self._arm()
        last_id, cut_ids = self.conn.execute(query, {**params, "fractions": fractions}).fetchone()
        return id_ranges(cut_ids, last_id) if last_id is not None else []

    def _export_snapshot(self) -> str:
        """This transaction's snapshot, for the other connections to import."""
        try:
            return self.conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        except psycopg.Error as exc:
            raise ConfigurationError(
                f"Sierra refuses to share the extraction's snapshot ({exc}); "
                "set extract_parallelism to 1 in sierra_sync_settings"
            ) from exc

    def _part_reader(
        self,
        conn: psycopg.Connection,
        selection: Selection,
        part: IdRange,
        fallback: int | None,
        header: bool,
    ) -> _PartCopy:
        # The temp table is this session's own; a joined connection computes its part of the
        # selection in place (the cost of copying in parts).
        own = conn is self.conn
        rows_query, params = materialised_rows_query(part) if own else item_rows_query(selection, part)
        statement = pgsql.SQL("COPY ({}) TO STDOUT {}").format(rows_query, copy_options(header))
        return _PartCopy(conn, statement, {**params, "itype_null_fallback": fallback})

    @contextmanager
    def _joined_connection(self, snapshot_id: str) -> Iterator[psycopg.Connection]:
        """Another connection reading the exported snapshot of this transaction; closed on every path."""
        conn = self.connect()
        try:
            _begin_read_only(conn)
            conn.execute(pgsql.SQL("SET TRANSACTION SNAPSHOT {}").format(pgsql.Literal(snapshot_id)))
            _configure_transaction(conn, self.remaining_ms())
            yield conn
        finally:
            conn.close()


def _begin_read_only(conn: psycopg.Connection) -> None:
    conn.autocommit = False
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    conn.read_only = True


def _set_statement_timeout(conn: psycopg.Connection, timeout_ms: int) -> None:
    conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{timeout_ms}ms",))


def _configure_transaction(conn: psycopg.Connection, timeout_ms: int) -> None:
    """The statement timeout, and no JIT: compiling the row query's many expressions costs more
    than it saves (about 1.5 s of a 1M-item batch). Both last for this transaction only."""
    _set_statement_timeout(conn, timeout_ms)
    if conn.info.server_version >= JIT_SINCE_SERVER_VERSION:
        conn.execute("SELECT set_config('jit', 'off', true)")


def _create_selection_table(conn: psycopg.Connection) -> None:
    """The session's temp table for the batch's selection, in its own short transaction before the
    snapshot (explicitly READ WRITE, so a role whose default_transaction_read_only is on still can)."""
    conn.autocommit = False
    conn.read_only = False
    try:
        with conn.transaction():
            conn.execute(load_sql(PIPELINE, "create_selected_items.sql"))
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction) as exc:
        raise ConfigurationError(
            f"the Sierra role may not create a TEMP table ({exc.sqlstate}: {exc.diag.message_primary}); "
            "the extraction materialises each batch's selection once in a temp table: grant it with "
            "GRANT TEMPORARY ON DATABASE <sierra database> TO <role>, and use the primary, not a "
            "hot standby"
        ) from exc


@contextmanager
def open_snapshot(
    conn: psycopg.Connection, statement_timeout_seconds: float, connect: Connect | None = None
) -> Iterator[SierraSnapshot]:
    """Own ``conn``: one REPEATABLE READ, READ ONLY transaction whose first statement reads the DB's
    ``now()`` and ``TimeZone`` (never changed); the connection is closed on every path.

    ``connect`` opens further connections for a batch copied in parts.
    """
    timeout_ms = max(1, round(statement_timeout_seconds * 1000))  # 0 would mean no timeout at all
    try:
        _create_selection_table(conn)
        _begin_read_only(conn)
        with conn.transaction():
            db_now, timezone = conn.execute("SELECT now(), current_setting('TimeZone')").fetchone()
            _configure_transaction(conn, timeout_ms)
            yield SierraSnapshot(conn, db_now, timezone, statement_timeout_ms=timeout_ms, connect=connect)
    finally:
        conn.close()
