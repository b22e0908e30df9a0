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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from psycopg import Connection, errors, sql

from etlkit.common.errors import BadInputError
from etlkit.common.sql import load_sql
from etlkit.enderturing.staging import CopySpool
from etlkit.enderturing.tables import Table

log = logging.getLogger(__name__)

PIPELINE = "enderturing"
SCHEMA_LOCK_KEY = 7_311_000
DICTIONARIES_LOCK_KEY = 7_311_001
SESSIONS_LOCK_KEY = 7_311_002
MIGRATIONS = ("001_tables.sql",)
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


def load_table(conn: Connection, schema: str, table: Table, spools: Sequence[CopySpool]) -> TableLoad:
    started = time.perf_counter()
    target = sql.Identifier(schema, table.name)
    stage = sql.Identifier(f"stage_{table.name}")
    columns = sql.SQL(", ").join(map(sql.Identifier, table.columns))
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
    orphans = _check_staged_rows(conn, schema, table, target, stage)
    result = TableLoad(
        table.name, staged, inserted, updated, stale_deleted, orphans, round(time.perf_counter() - started, 3)
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
    conn: Connection, schema: str, table: Table, target: sql.Identifier, stage: sql.Identifier
) -> dict[str, int]:
    """Every staged key must now be in the target; the soft relationships of the batch's rows are
    counted in the same scan and logged as warnings, never fatal (spec §2.1). Returns the orphans."""
    orphan_counts = sql.SQL("").join(
        sql.SQL(", ")
        + _query("orphan_count.sql", column=sql.Identifier(column), parent=sql.Identifier(schema, parent))
        for column, parent in table.refs
    )
    statement = _query(
        "staged_rows_check.sql",
        target=target,
        stage=stage,
        key_match=_key_match(table),
        orphan_counts=orphan_counts,
    )
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
    conn: Connection, schema: str, tables: Sequence[Table], spools: Sequence[CopySpool], lock_key: int
) -> list[TableLoad]:
    """Load ``tables`` from the spool files in order in ONE transaction, after the advisory lock of this kind."""
    with conn.transaction():
        take_lock(conn, lock_key)
        conn.execute(load_sql(PIPELINE, "load_settings.sql"))
        return [load_table(conn, schema, table, spools) for table in tables]
