"""write_sql: one transaction per load. append and replace COPY straight into the table; upsert
COPYs straight in while every key is new, else stages in a temporary table and upserts from it.

Identifiers are composed with ``psycopg.sql.Identifier``; values only travel through COPY.
Pre-checks (table, columns, unique constraint for upsert) fail without retry; connection
errors propagate as they are so that Airflow retries the task.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
from collections.abc import Iterator

from psycopg import errors, sql

from etlkit.common.errors import BadInputError
from etlkit.common.sql import load_sql
from etlkit.jobs.arrowlib import pa, pc
from etlkit.jobs.csvtext import csv_bytes

log = logging.getLogger(__name__)

STAGE_TABLE = "_etlkit_stage"
APPEND_LOG_TABLE = "etlkit_append_log"
ORDINAL_COLUMN = "_etlkit_ordinal"
PROBE_KEYS = 1000  # keys of the first batch looked up before choosing the straight COPY


def logical_run_key(dag_id: str, run_id: str, logical_date) -> str:
    """What append mode writes once for: the DAG and its logical date, so a re-triggered date, a
    backfill of it or a cleared task all find the first load; a run with no logical date (asset
    triggered, or triggered with ``logical_date: null``) is its own logical run."""
    return f"{dag_id}|{logical_date.isoformat() if logical_date is not None else run_id}"


def append_ledger_key(run_key: str, component_id: str, table: str) -> str:
    return f"{run_key}|{component_id}|{table}"


def _precheck(connection, schema: str, table: str, names: list[str], config, component_id: str) -> None:
    qualified = sql.Identifier(schema, table).as_string(connection)
    if connection.execute("SELECT to_regclass(%s)", [qualified]).fetchone()[0] is None:
        raise BadInputError(f"{component_id}: table {config.table} does not exist")
    existing = {
        row[0]
        for row in connection.execute(
            load_sql("jobs", "target_columns.sql"), {"schema": schema, "table": table}
        )
    }
    missing = [n for n in names if n not in existing]
    if missing:
        raise BadInputError(f"{component_id}: table {config.table} has no column(s) {', '.join(missing)}")
    if config.mode == "upsert":
        keys = sorted(config.key_columns)
        unique_sets = [
            sorted(row[0])
            for row in connection.execute(load_sql("jobs", "unique_keys.sql"), {"qualified": qualified})
        ]
        if keys not in unique_sets:
            raise BadInputError(
                f"{component_id}: no primary key or unique constraint on {config.table} covers exactly "
                f"({', '.join(config.key_columns)})"
            )


def write_sql(
    connection,
    config,
    columns,
    chunks: Iterator[pa.RecordBatch],
    component_id: str,
    *,
    append_key: str | None = None,
) -> None:
    """Writes ``chunks`` (Arrow batches of ``columns``) to ``config.table`` in one transaction, COPYed as CSV.

    With ``append_key`` (append mode: ``append_ledger_key`` of the logical run, component and
    table), the append is recorded in the schema's append log in the same transaction, and a later
    call with the same key (a retry, a cleared upstream, the same date triggered again) reads its
    input but writes nothing.
    """
    schema, table = config.table.split(".")
    target = sql.Identifier(schema, table)
    names = [c.name for c in columns]
    append_log = sql.Identifier(schema, APPEND_LOG_TABLE)
    if append_key is not None:
        _ensure_append_log(connection, schema, component_id)
    with connection.transaction():
        if config.statement_timeout_seconds:
            connection.execute(
                "SELECT set_config('statement_timeout', %s, true)", [f"{config.statement_timeout_seconds}s"]
            )
        _precheck(connection, schema, table, names, config, component_id)
        if append_key is not None and _already_appended(
            connection, append_log, append_key, chunks, component_id
        ):
            return
        if config.mode == "upsert":
            checked = _null_keys_refused(chunks, config, component_id)
            _load_upsert(connection, config, names, target, checked, component_id)
            return
        if config.mode == "replace":
            connection.execute(sql.SQL("TRUNCATE {}").format(target))
        inserted = _copy(connection, target, names, chunks)
        if append_key is not None:
            connection.execute(
                sql.SQL(
                    "INSERT INTO {} (append_key, component_id, target_table, rows) VALUES (%s, %s, %s, %s)"
                ).format(append_log),
                [append_key, component_id, config.table, inserted],
            )


def _copy(connection, table, names: list[str], chunks: Iterator[pa.RecordBatch]) -> int:
    """COPYs ``chunks`` into ``table`` as CSV text; returns the rows sent."""
    column_list = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    rows = 0
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(table, column_list)
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        for batch in chunks:
            copy.write(csv_bytes(batch, for_copy=True))
            rows += batch.num_rows
    return rows


def _null_keys_refused(chunks, config, component_id: str) -> Iterator[pa.RecordBatch]:
    keys = config.key_columns
    for batch in chunks:
        if any(batch.column(k).null_count for k in keys):
            raise BadInputError(f"{component_id}: a row has a null key ({', '.join(keys)})")
        yield batch


def _load_upsert(connection, config, names: list[str], target, chunks, component_id: str) -> None:
    """Rows whose keys are all new are COPYed straight into the target, the cheapest load there is;
    the first key already stored (or repeated in the input) rolls that back and the whole input takes
    the stage + INSERT … ON CONFLICT path. The input is spilled to a local file as it goes, so the
    fallback reads it again without holding it in memory. A target holding keys of the first batch
    goes to the upsert at once (a re-load)."""
    first = next(chunks, None)
    if first is None:
        return
    with _Spill(first.schema) as spill:
        rows = spill.tee(itertools.chain([first], chunks))
        if not _keys_stored(connection, target, config.key_columns, first):
            try:
                with connection.transaction():
                    _copy(connection, target, names, rows)
                return
            except errors.UniqueViolation:
                log.info(
                    "%s: keys already stored or repeated: loading with INSERT … ON CONFLICT", config.table
                )
        for _ in rows:  # the rest of the input into the spill
            pass
        _stage_and_upsert(connection, config, names, target, spill.batches(), component_id)


def _keys_stored(connection, target, keys: list[str], batch: pa.RecordBatch) -> bool:
    """Whether the target holds one of the first keys of ``batch`` (one key column), or any row at all
    (several). Only a guess to start with the right path: the COPY's unique violation is the check."""
    if len(keys) != 1:
        return connection.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(target)).fetchone()[0]
    key_type = connection.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s",
        [target.as_string(connection), keys[0]],
    ).fetchone()[0]
    values = pc.cast(batch.column(keys[0]).slice(0, PROBE_KEYS), pa.string()).to_pylist()
    probe = sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE {} = ANY(%s::text[]::{}[]))").format(
        target, sql.Identifier(keys[0]), sql.SQL(key_type)
    )
    return connection.execute(probe, [values]).fetchone()[0]


class _Spill:
    """Batches written to an unnamed local temporary file (Arrow IPC) while they pass, read back on demand."""

    def __init__(self, schema: pa.Schema):
        self._file = tempfile.TemporaryFile(prefix="etlkit-spill-")  # noqa: SIM115 (closed by __exit__)
        self._writer = pa.ipc.new_stream(self._file, schema)

    def __enter__(self) -> _Spill:
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def tee(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            self._writer.write_batch(batch)
            yield batch

    def batches(self) -> Iterator[pa.RecordBatch]:
        self._writer.close()
        self._file.seek(0)
        yield from pa.ipc.open_stream(self._file)


def _stage_and_upsert(connection, config, names: list[str], target, chunks, component_id: str) -> None:
    stage = sql.Identifier(STAGE_TABLE)
    column_list = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    connection.execute(
        sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            stage, column_list, target
        )
    )
    connection.execute(
        sql.SQL("ALTER TABLE {} ADD COLUMN {} bigserial").format(stage, sql.Identifier(ORDINAL_COLUMN))
    )
    _copy(connection, stage, names, chunks)
    _upsert(connection, config, names, target, stage, component_id)


def _ensure_append_log(connection, schema: str, component_id: str) -> None:
    append_log = sql.Identifier(schema, APPEND_LOG_TABLE)
    if connection.execute("SELECT to_regclass(%s)", [append_log.as_string(connection)]).fetchone()[0]:
        return  # checked first: CREATE … IF NOT EXISTS needs CREATE on the schema even when it exists
    try:
        with connection.transaction():
            connection.execute(sql.SQL(load_sql("jobs", "append_log.sql")).format(append_log=append_log))
    except (errors.UniqueViolation, errors.DuplicateTable):
        pass  # created concurrently by another writer into the same schema
    except errors.InsufficientPrivilege:
        raise BadInputError(
            f"{component_id}: append mode records each append in {schema}.{APPEND_LOG_TABLE} so that a retry "
            f"never appends twice, and may not create it: grant CREATE on schema {schema}, or create the table "
            f"with include/sql/jobs/append_log.sql ({{append_log}} = {schema}.{APPEND_LOG_TABLE}) and grant "
            "SELECT, INSERT on it"
        ) from None


def _already_appended(connection, append_log, append_key: str, chunks, component_id: str) -> bool:
    row = connection.execute(
        sql.SQL("SELECT rows, committed_at FROM {} WHERE append_key = %s").format(append_log), [append_key]
    ).fetchone()
    if row is None:
        return False
    for _ in chunks:  # read the input anyway, so this try reports the same counts as the one that wrote
        pass
    log.warning(
        "%s: %s was appended by an earlier try or run of the same logical run (%s rows at %s); nothing "
        "written. To append it again, delete those rows and this key from the append log",
        component_id,
        append_key,
        *row,
    )
    return True


def _upsert(connection, config, names: list[str], target, stage, component_id: str) -> None:
    """One INSERT … ON CONFLICT from the stage. A row whose values equal the stored row is not
    rewritten (no new row version, no index or WAL work), so re-loading unchanged data is cheap.

    With ``duplicate_keys=fail`` and columns to update, PostgreSQL itself refuses a key that occurs
    twice (cardinality violation), so the duplicate search runs only then, to name the key."""
    keys = config.key_columns
    updates = (
        config.update_columns if config.update_columns is not None else [n for n in names if n not in keys]
    )
    if config.duplicate_keys == "fail" and not updates:
        _refuse_duplicate_keys(connection, keys, stage, component_id)
    if config.duplicate_keys == "fail":
        try:
            with connection.transaction():
                connection.execute(_upsert_statement(names, keys, updates, target, stage, keep_last=False))
        except errors.CardinalityViolation:
            _refuse_duplicate_keys(connection, keys, stage, component_id)
            raise
        return
    connection.execute(_upsert_statement(names, keys, updates, target, stage, keep_last=True))


def _refuse_duplicate_keys(connection, keys: list[str], stage, component_id: str) -> None:
    key_list = sql.SQL(", ").join(sql.Identifier(k) for k in keys)
    duplicate = connection.execute(
        sql.SQL("SELECT {} FROM {} GROUP BY {} HAVING count(*) > 1 LIMIT 1").format(key_list, stage, key_list)
    ).fetchone()
    if duplicate:
        raise BadInputError(f"{component_id}: duplicate key {dict(zip(keys, duplicate, strict=True))}")


def _upsert_statement(
    names: list[str], keys: list[str], updates: list[str], target, stage, *, keep_last: bool
):
    column_list = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    key_list = sql.SQL(", ").join(sql.Identifier(k) for k in keys)
    if updates:
        stored = sql.SQL(", ").join(sql.SQL("{}.{}").format(target, sql.Identifier(u)) for u in updates)
        incoming = sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(u)) for u in updates)
        action = sql.SQL("DO UPDATE SET {} WHERE ROW({}) IS DISTINCT FROM ROW({})").format(
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(u)) for u in updates),
            stored,
            incoming,
        )
    else:
        action = sql.SQL("DO NOTHING")
    if keep_last:  # DISTINCT ON keeps the last occurrence of a key
        rows = sql.SQL("SELECT DISTINCT ON ({keys}) {cols} FROM {stage} ORDER BY {keys}, {ordinal} DESC")
    else:
        rows = sql.SQL("SELECT {cols} FROM {stage}")
    return sql.SQL("INSERT INTO {target} ({cols}) {rows} ON CONFLICT ({keys}) {action}").format(
        target=target,
        cols=column_list,
        rows=rows.format(
            keys=key_list, cols=column_list, stage=stage, ordinal=sql.Identifier(ORDINAL_COLUMN)
        ),
        keys=key_list,
        action=action,
    )
