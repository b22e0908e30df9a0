"""Set-based loading of spooled tables into PostgreSQL (spec §5).

Per table a fixed number of statements, whatever the row count: temp stage, COPY, optional child
replacement, one ``INSERT … ON CONFLICT`` that only touches rows whose values differ, then one scan
of the stage that checks every staged key is in the target and counts orphans. The caller owns the
transaction.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from psycopg import Connection, errors, sql

from etlkit.common.errors import BadInputError
from etlkit.common.sql import load_sql
from etlkit.enderturing import changes, extract
from etlkit.enderturing.staging import SPOOL_DIR, CopySpool
from etlkit.enderturing.tables import SESSION_TABLES, Table

log = logging.getLogger(__name__)

PIPELINE = "enderturing"
SCHEMA_LOCK_KEY = 7_311_000
DICTIONARIES_LOCK_KEY = 7_311_001
SESSIONS_LOCK_KEY = 7_311_002
MIGRATIONS = ("001_tables.sql", "002_session_sources.sql")
COPY_BLOCK = 1 << 20


@dataclass
class TableLoad:
    table: str
    staged: int
    inserted: int
    updated: int
    stale_deleted: int
    orphans: dict[str, int]
    seconds: float


def table_counts(loads: Sequence[TableLoad]) -> dict[str, dict]:
    """Per table what the XComs and the lineage show."""
    return {
        r.table: {"staged": r.staged, "inserted": r.inserted, "updated": r.updated, "orphans": r.orphans}
        for r in loads
    }


def _query(name: str, **parts: sql.Composable) -> sql.Composed:
    return sql.SQL(load_sql(PIPELINE, name).strip()).format(**parts)


def take_lock(conn: Connection, lock_key: int) -> None:
    conn.execute(load_sql(PIPELINE, "advisory_lock.sql"), {"lock_key": lock_key})


def ensure_schema(conn: Connection, schema: str) -> None:
    with conn.transaction():
        take_lock(conn, SCHEMA_LOCK_KEY)
        for migration in MIGRATIONS:
            conn.execute(_query(migration, schema=sql.Identifier(schema)))


def _copy_files(conn: Connection, statement: sql.Composed, paths: list[Path]) -> int:
    """One COPY statement fed from every file in turn; returns the rows copied."""
    with conn.cursor() as cursor:
        with cursor.copy(statement) as copy:
            for path in paths:
                with path.open("rb") as source:
                    while block := source.read(COPY_BLOCK):
                        copy.write(block)
        return cursor.rowcount


_COPY_PLACE = re.compile(r"line (\d+)(?:, column (\w+))?")
_QUOTED = re.compile(r':?\s*"[^"]*"')


def _rejected_value(table: Table, exc: errors.DataError, paths: list[Path]) -> BadInputError:
    """PostgreSQL's refusal of a staged value, naming the row's key and the column, never the value
    (staged rows are personal data; the database's own message quotes it)."""
    place = _COPY_PLACE.search(exc.diag.context or "")
    line, column = (int(place.group(1)), place.group(2)) if place else (None, None)
    key = _first_field_of_line(paths, line) if line else None
    reason = _QUOTED.sub("", exc.diag.message_primary or type(exc).__name__)
    return BadInputError(
        f"{table.name}: PostgreSQL rejected the value of column {column or '?'} in the row of "
        f"{table.key[0]} {key or '?'} (COPY line {line or '?'}): {reason} [SQLSTATE {exc.sqlstate}]; "
        "value not shown: personal data"
    )


def _first_field_of_line(paths: list[Path], line: int) -> str | None:
    """The first field (the session or entity id) of the ``line``-th row over ``paths`` in turn."""
    seen = 0
    for path in paths:
        with path.open("rb") as handle:
            for raw in handle:
                seen += 1
                if seen == line:
                    return raw.split(b"\t", 1)[0].decode("utf-8", "replace")
    return None


def _key_match(table: Table) -> sql.Composed:
    return sql.SQL(" AND ").join(
        sql.SQL("s.{0} = t.{0}").format(sql.Identifier(column)) for column in table.key
    )


@dataclass
class FreshRows:
    """Spooled rows of sessions that have no ``sessions`` row yet (``changes.NEW_SESSIONS`` lists
    them): they cannot have rows in any session table, so they are COPYed straight into the targets
    (no stage, no upsert, nothing to replace). Should a key be there after all (rows written by
    hand), the COPY is rolled back to its savepoint and those rows take the stage path."""

    spools: Sequence[CopySpool]
    row_counts: dict[str, int]


def _copy_fresh(
    conn: Connection, schema: str, table: Table, fresh: FreshRows, columns: sql.Composable
) -> tuple[int, dict[str, int]] | None:
    """COPY the fresh rows into the target; their count and orphans, or None when a key collided."""
    paths = [path for spool in fresh.spools if (path := spool.rows_path(table)).exists()]
    if not paths:
        return 0, {}
    target = sql.Identifier(schema, table.name)
    try:
        with conn.transaction():
            copied = _copy_files(conn, _query("stage_copy.sql", stage=target, columns=columns), paths)
    except errors.UniqueViolation:
        log.warning("%s.%s: a key of a new session is already there: staged instead", schema, table.name)
        return None
    except errors.DataError as exc:
        raise _rejected_value(table, exc, paths) from None
    if copied != fresh.row_counts.get(table.name, 0):
        raise StagedKeysMissingError(
            f"{schema}.{table.name}: {fresh.row_counts.get(table.name, 0) - copied} rows of new sessions "
            "missing after their COPY; nothing was committed. The target table no longer matches the "
            "pipeline's DDL (a trigger or rule?): compare it with include/sql/enderturing/001_tables.sql"
        )
    return copied, _count_fresh_orphans(conn, schema, table, target)


def _count_fresh_orphans(
    conn: Connection, schema: str, table: Table, target: sql.Identifier
) -> dict[str, int]:
    if not table.refs:
        return {}
    orphan_counts = sql.SQL(", ").join(
        _query("orphan_count.sql", column=sql.Identifier(column), parent=sql.Identifier(schema, parent))
        for column, parent in table.refs
    )
    statement = _query(
        "fresh_rows_orphans.sql",
        orphan_counts=orphan_counts,
        target=target,
        new_sessions=sql.Identifier(changes.NEW_SESSIONS),
        session_column=sql.Identifier(table.replace_by or table.key[0]),
    )
    counts = conn.execute(statement).fetchone()
    return {f"{column}->{parent}": count for (column, parent), count in zip(table.refs, counts, strict=True)}


def load_table(
    conn: Connection, schema: str, table: Table, spools: Sequence[CopySpool], fresh: FreshRows | None = None
) -> TableLoad:
    started = time.perf_counter()
    target = sql.Identifier(schema, table.name)
    stage = sql.Identifier(f"stage_{table.name}")
    columns = sql.SQL(", ").join(map(sql.Identifier, table.columns))
    copied, fresh_orphans = 0, {}
    if fresh is not None:
        outcome = _copy_fresh(conn, schema, table, fresh, columns)
        if outcome is None:
            spools = [*spools, *fresh.spools]
        else:
            copied, fresh_orphans = outcome
    conn.execute(_query("stage_create.sql", stage=stage, target=target))
    rows_paths = [path for spool in spools if (path := spool.rows_path(table)).exists()]
    staged = 0
    if rows_paths:
        try:
            staged = _copy_files(conn, _query("stage_copy.sql", stage=stage, columns=columns), rows_paths)
        except errors.DataError as exc:
            raise _rejected_value(table, exc, rows_paths) from None  # psycopg's text quotes the value
    key = sql.SQL(", ").join(map(sql.Identifier, table.key))
    # Temp tables get no autovacuum statistics; the key columns are what the joins below need.
    conn.execute(sql.SQL("ANALYZE {} ({})").format(stage, key))

    replace_paths = [path for spool in spools if (path := spool.replace_path(table)).exists()]
    stale_deleted = 0
    if table.replace_by and replace_paths:
        replace_set = sql.Identifier(f"replace_{table.name}")
        parent = sql.Identifier(table.replace_by)
        conn.execute(_query("replace_set_create.sql", replace_set=replace_set, parent=parent, target=target))
        _copy_files(conn, _query("replace_set_copy.sql", replace_set=replace_set), replace_paths)
        deleted = conn.execute(
            _query(
                "replace_children.sql",
                target=target,
                replace_set=replace_set,
                parent=parent,
                stage=stage,
                key_match=_key_match(table),
            )
        )
        stale_deleted = deleted.rowcount

    inserted, updated = _upsert(conn, table, target, stage, columns, key)
    # Every staged row the upsert wrote is in the target: the key check is needed only for the rest
    # (rows left alone because unchanged, or a trigger/rule that swallowed them).
    orphans = _check_staged_rows(conn, schema, table, target, stage, check_keys=inserted + updated < staged)
    for relationship, count in fresh_orphans.items():
        if count:
            log.warning(
                "%s.%s: %s rows of new sessions refer to ids missing (%s)",
                schema,
                table.name,
                count,
                relationship,
            )
            orphans[relationship] = orphans.get(relationship, 0) + count
    result = TableLoad(
        table.name,
        staged + copied,
        inserted + copied,
        updated,
        stale_deleted,
        orphans,
        round(time.perf_counter() - started, 3),
    )
    log.info(
        "%s.%s: staged %s, inserted %s, updated %s, stale children deleted %s in %.2fs",
        schema,
        table.name,
        staged,
        inserted,
        updated,
        stale_deleted,
        result.seconds,
    )
    return result


class StagedKeysMissingError(BadInputError):
    """After the upsert a staged key is not in the target: the transaction is rolled back. A
    contract violation (the reference's silent no-op, spec §6.3): a retry would do the same."""


def _check_staged_rows(
    conn: Connection,
    schema: str,
    table: Table,
    target: sql.Identifier,
    stage: sql.Identifier,
    check_keys: bool = True,
) -> dict[str, int]:
    """Every staged key must now be in the target (when ``check_keys``); the soft relationships of
    the batch's rows are counted in the same scan and logged as warnings, never fatal (spec §2.1).
    Returns the orphans."""
    if not check_keys and not table.refs:
        return {}
    missing = (
        _query("staged_key_missing.sql", target=target, key_match=_key_match(table))
        if check_keys
        else sql.SQL("0")
    )
    orphan_counts = sql.SQL("").join(
        sql.SQL(", ")
        + _query("orphan_count.sql", column=sql.Identifier(column), parent=sql.Identifier(schema, parent))
        for column, parent in table.refs
    )
    statement = _query("staged_rows_check.sql", stage=stage, missing=missing, orphan_counts=orphan_counts)
    missing_keys, *counts = conn.execute(statement).fetchone()
    if missing_keys:
        raise StagedKeysMissingError(
            f"{schema}.{table.name}: {missing_keys} staged keys missing after the upsert; nothing "
            "was committed. The target table no longer matches the pipeline's DDL (a trigger, rule or "
            "changed key?): compare it with include/sql/enderturing/001_tables.sql"
        )
    orphans = {}
    for (column, parent), count in zip(table.refs, counts, strict=True):
        if count:
            log.warning(
                "%s.%s.%s: %s staged rows refer to ids missing from %s",
                schema,
                table.name,
                column,
                count,
                parent,
            )
            orphans[f"{column}->{parent}"] = count
    return orphans


def _upsert(
    conn: Connection,
    table: Table,
    target: sql.Identifier,
    stage: sql.Identifier,
    columns: sql.Composable,
    key: sql.Composable,
) -> tuple[int, int]:
    """Insert new keys and update the rows whose values differ. The target's key index arbitrates,
    so the cost follows the batch, not the size of the target."""
    if not table.non_key_columns:
        statement = _query("insert_keys_only.sql", target=target, stage=stage, columns=columns, key=key)
    else:
        non_key = [sql.Identifier(column) for column in table.non_key_columns]
        statement = _query(
            "upsert.sql",
            target=target,
            stage=stage,
            columns=columns,
            key=key,
            non_key=sql.SQL(", ").join(non_key),
            excluded_non_key=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(c) for c in non_key),
            target_non_key=sql.SQL(", ").join(sql.SQL("t.{}").format(c) for c in non_key),
        )
    try:
        with conn.transaction():  # a savepoint: the error below replaces the database's own
            inserted, updated = conn.execute(statement).fetchone()
    except errors.CardinalityViolation as exc:
        raise BadInputError(f"{table.name}: the batch holds a key more than once") from exc
    return inserted, updated


def load_tables(
    conn: Connection,
    schema: str,
    tables: Sequence[Table],
    spools: Sequence[CopySpool],
    lock_key: int,
    fresh: FreshRows | None = None,
) -> list[TableLoad]:
    """Load ``tables`` from the spool files in order in ONE transaction, after the advisory lock of this kind."""
    with conn.transaction():
        take_lock(conn, lock_key)
        conn.execute(load_sql(PIPELINE, "load_settings.sql"))
        return [load_table(conn, schema, table, spools, fresh) for table in tables]


class StagedBatchIncompleteError(BadInputError):
    """The staged files do not hold what the extraction counted: nothing is loaded."""


@dataclass
class SessionBatchLoad:
    tables: list[TableLoad]
    sessions: int  # staged sessions
    unchanged: int  # skipped before the transform: same source digest as their last load
    warnings: dict[str, int]
    transform_seconds: float


def load_session_batch(
    conn: Connection,
    schema: str,
    staged_dir: Path,
    workers: int = 1,
    expected_sessions: int | None = None,
) -> SessionBatchLoad:
    """Tables 13–20 from a staged batch in ONE transaction: under the sessions lock, sessions whose
    source digest is unchanged since their last load are skipped (``changes``), the others are
    transformed into COPY files and loaded, and their digests recorded."""
    with conn.transaction():
        take_lock(conn, SESSIONS_LOCK_KEY)
        conn.execute(load_sql(PIPELINE, "session_batch_settings.sql"))
        plan = changes.plan(conn, schema, staged_dir, staged_dir / changes.PLAN_DIR)
        if expected_sessions is not None and plan.sessions != expected_sessions:
            raise StagedBatchIncompleteError(
                f"{plan.sessions} sessions staged, {expected_sessions} extracted: nothing loaded "
                "(a bug, not a data problem: report it)"
            )
        started = time.perf_counter()
        spool_root = staged_dir / SPOOL_DIR
        new = extract.spool_sessions(plan.new_dir, spool_root / "new", workers) if plan.new_dir else None
        changed = (
            extract.spool_sessions(plan.changed_dir, spool_root / "changed", workers)
            if plan.changed_dir
            else None
        )
        transform_seconds = time.perf_counter() - started
        batches = [batch for batch in (new, changed) if batch is not None]
        transformed = sum(batch.row_counts.get("sessions", 0) for batch in batches)
        if transformed != plan.sessions - plan.unchanged:
            raise StagedBatchIncompleteError(
                f"{transformed} session rows transformed, {plan.sessions - plan.unchanged} changed of "
                f"{plan.sessions} staged: nothing loaded (a bug, not a data problem: report it)"
            )
        fresh = FreshRows(new.spools, new.row_counts) if new else None
        results = load_tables(
            conn, schema, SESSION_TABLES, changed.spools if changed else [], SESSIONS_LOCK_KEY, fresh=fresh
        )
        changes.record(conn, schema)
    warnings: Counter[str] = Counter()
    for batch in batches:
        warnings.update(batch.warnings)
    log.info(
        "%s sessions staged, %s unchanged since their last load (skipped)", plan.sessions, plan.unchanged
    )
    return SessionBatchLoad(results, plan.sessions, plan.unchanged, dict(warnings), transform_seconds)
