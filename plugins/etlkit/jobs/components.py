"""The closed component catalog. Each runner takes a ``ComponentRun`` (see ``runtime``).

Runners stream: they read chunks through ``run.read``, and hand at most ``chunk_size`` rows at
a time to ``run.emit``. Only aggregation (one state per group) and joins (the ``right`` side)
hold more than a chunk in memory, each under a hard limit.
"""

from __future__ import annotations

import csv
import glob
import gzip
import io
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from pathlib import Path
from typing import Any

import numpy as np

from etlkit.common.errors import BadInputError
from etlkit.jobs.arrowlib import pa, pc
from etlkit.jobs.columns import REJECT_REASON_COLUMN, arrow_array, arrow_schema, arrow_type
from etlkit.jobs.conversion import ConversionFailed, canonical_text, convert, converter
from etlkit.jobs.csvread import InvalidRows, LineGuard, guarded_batches
from etlkit.jobs.csvtext import csv_bytes
from etlkit.jobs.expressions import compile_expression, compile_vector, compile_vector_condition
from etlkit.jobs.validation import as_mapping, join_input_schema
from etlkit.jobs.vconvert import convert_column


def chunked(rows: Iterator[list], size: int) -> Iterator[list[list]]:
    batch: list[list] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def rows_of(batch: pa.RecordBatch) -> list[list]:
    """A batch as Python rows (the row-at-a-time components: JSON, SQL reads, joins, aggregation)."""
    columns = [column.to_pylist() for column in batch.columns]
    return (
        [list(row) for row in zip(*columns, strict=True)] if columns else [[] for _ in range(batch.num_rows)]
    )


def _column_array(values: list, column) -> pa.Array:
    kind = arrow_type(column)
    try:
        return arrow_array(values, kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        if column.type == "decimal":  # a derived value with more places than the derived scale
            step = Decimal(1).scaleb(-column.scale)
            return arrow_array(
                [None if v is None else Decimal(v).quantize(step, ROUND_HALF_EVEN) for v in values], kind
            )
        if column.type == "float":
            return arrow_array([None if v is None else float(v) for v in values], kind)
        raise


def emit_rows(run, port: str, rows: list[list]) -> None:
    """Python rows to ``port`` as one batch of the port's Arrow schema."""
    schema = run.out_schema(port)
    emit_columns(run, port, list(zip(*rows, strict=True)) if rows else [() for _ in schema])


def emit_columns(run, port: str, columns: list) -> None:
    """Python values, column by column, to ``port`` as one batch of the port's Arrow schema."""
    schema = run.out_schema(port)
    arrays = []
    for column, values in zip(schema, columns, strict=True):
        try:
            arrays.append(_column_array(list(values), column))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as error:
            raise BadInputError(
                f"{run.component.id}: batch written to port {port!r} does not match its schema: column "
                f"{column.name!r} is not {column.type_label()}: {error}"
            ) from None
    run.emit(port, pa.RecordBatch.from_arrays(arrays, schema=arrow_schema(schema)))


# ---- files ----------------------------------------------------------------------------------


def matching_files(pattern_path: Path) -> list[Path]:
    """The files a reader's rendered path or glob names, in sorted order."""
    text = str(pattern_path)
    files = sorted(Path(p) for p in glob.glob(text)) if "*" in text else [pattern_path]
    return [f for f in files if f.is_file()]


def _input_files(run, pattern_path: Path) -> list[Path]:
    text = str(pattern_path)
    files = matching_files(pattern_path)
    if not files and run.config.missing_file == "fail":
        raise BadInputError(f"{run.component.id}: no input file matches {text}")
    return files


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


@contextmanager
def _atomic_output(run, path: Path):
    """Write under a temporary name; the file appears only when complete."""
    if path.exists() and run.config.if_exists == "fail":
        raise BadInputError(f"{run.component.id}: {path} already exists (if_exists=fail)")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    raw = temporary.open("wb")
    stream = gzip.GzipFile(fileobj=raw, mode="wb") if path.suffix == ".gz" else raw
    try:
        yield stream
        stream.close()
        raw.close()
        os.replace(temporary, path)
    except BaseException:
        stream.close()
        raw.close()
        temporary.unlink(missing_ok=True)
        raise


def _writer_batches(run) -> tuple[list[str], Iterator[pa.RecordBatch]]:
    names = [c.name for c in run.in_schema()]
    if run.config.columns is None:
        return names, run.read()
    indices = [names.index(name) for name in run.config.columns]
    return list(run.config.columns), (batch.select(indices) for batch in run.read())


def _writer_rows(run) -> tuple[list[str], Iterator[list[list]]]:
    names, batches = _writer_batches(run)
    return names, (rows_of(batch) for batch in batches)


# ---- sources --------------------------------------------------------------------------------


def read_csv(run) -> None:
    config = run.config
    out_schema = arrow_schema(run.out_schema("out"))
    for path in _input_files(run, run.io.resolve_path(config.path, config.conn)):
        with pa.input_stream(str(path), compression="detect") as source:
            guard = LineGuard(source)
            try:
                for batch in _csv_file_batches(run, path, guard):
                    run.emit("out", pa.RecordBatch.from_arrays(batch.columns, schema=out_schema))
            except UnicodeDecodeError:
                raise BadInputError(f"{path}: the header is not UTF-8 text") from None
            except pa.ArrowInvalid as error:  # e.g. invalid UTF-8; Arrow's message quotes no field values
                raise BadInputError(f"{path}: unreadable CSV: {error}") from None


def _csv_file_batches(run, path: Path, guard: LineGuard) -> Iterator[pa.RecordBatch]:
    config = run.config
    columns = config.columns
    width = len(columns)
    if config.header:
        header_bytes = guard.header_line()
        header = (
            next(csv.reader([header_bytes.decode("utf-8")], delimiter=config.delimiter))
            if header_bytes
            else []
        )
        duplicates = sorted({name for name in header if header.count(name) > 1})
        if duplicates:
            raise BadInputError(f"{path}: duplicate header column(s) {', '.join(duplicates)}")
        indices = _header_indices(run, header, path)
        names, width = [f"f{i}" for i in range(len(header))], len(header)
    else:
        indices, names = list(range(width)), [f"f{i}" for i in range(width)]
    if not names:
        return
    handler = InvalidRows(
        guard, width, not config.header and config.extra_columns == "ignore", config.delimiter
    )
    required = [position for position, column in enumerate(columns) if not column.nullable]

    def bad_lines() -> None:
        problems = handler.problems + [(bad.line, bad.reason) for bad in guard.bad]
        handler.problems.clear()
        guard.bad.clear()
        if not problems:
            return
        if config.on_bad_lines == "fail":
            line, reason = min(problems)
            raise BadInputError(f"{path} line {line}: malformed line: {reason}")
        run.count_source(len(problems))
        run.metrics.rows_dropped += len(problems)
        run.metrics.reject("malformed_line", len(problems))

    for raw in guarded_batches(guard, names, handler, config.delimiter, list(config.null_values)):
        bad_lines()
        parts = [raw]
        if handler.kept:
            kept = list(zip(*handler.kept, strict=True))
            nulls = set(config.null_values)
            arrays = [
                arrow_array([None if v in nulls else v for v in values], pa.string()) for values in kept
            ]
            parts.append(pa.RecordBatch.from_arrays(arrays, names=names))
            handler.kept.clear()
        for part in parts:
            batch = part.select(indices)
            run.count_source(batch.num_rows)
            if required:
                batch = _drop_required_nulls(run, path, batch, required)
            for offset in range(0, batch.num_rows, run.chunk_size):
                yield batch.slice(offset, run.chunk_size)
    bad_lines()


def _drop_required_nulls(run, path: Path, batch: pa.RecordBatch, required: list[int]) -> pa.RecordBatch:
    missing = pc.is_null(batch.column(required[0]))
    for position in required[1:]:
        missing = pc.or_(missing, pc.is_null(batch.column(position)))
    count = pc.sum(missing).as_py() or 0
    if not count:
        return batch
    name = next(run.config.columns[p].name for p in required if pc.any(pc.is_null(batch.column(p))).as_py())
    if run.config.on_bad_lines == "fail":
        raise BadInputError(f"{path}: malformed line: null in non-nullable column {name!r}")
    run.metrics.rows_dropped += count
    run.metrics.reject("malformed_line", count)
    return batch.filter(pc.invert(missing))


def _header_indices(run, header: list[str], path: Path) -> list[int]:
    positions = {name: i for i, name in enumerate(header)}
    sources = [c.source or c.name for c in run.config.columns]
    missing = [s for s in sources if s not in positions]
    if missing:
        raise BadInputError(f"{path}: declared column(s) {', '.join(missing)} missing from the header")
    extra = [name for name in header if name not in sources]
    if extra and run.config.extra_columns == "fail":
        raise BadInputError(f"{path}: undeclared column(s) {', '.join(extra)} (extra_columns=fail)")
    return [positions[s] for s in sources]


def _json_records(handle, array: bool) -> Iterator[Any]:
    if not array:
        for line in handle:
            if line.strip():
                yield json.loads(line, parse_float=Decimal)
        return
    yield from _json_array_records(handle)


MAX_JSON_RECORD_CHARS = 1 << 26  # one array element; a larger one is refused instead of buffered


def _json_array_records(handle) -> Iterator[Any]:
    """Elements of the one top-level JSON array of a file, parsed incrementally from 64 KiB reads.

    Strict as ``json.load``: elements are separated by exactly one comma, and nothing but whitespace
    follows the closing bracket. Only an element cut by the end of a read makes it read more.
    """
    decoder = json.JSONDecoder(parse_float=Decimal)
    buffer, position, eof = "", 0, False

    def fill() -> None:
        nonlocal buffer, position, eof
        more = handle.read(1 << 16)
        buffer, position, eof = buffer[position:] + more, 0, not more

    def skip_space() -> bool:
        nonlocal position
        while True:
            while position < len(buffer) and buffer[position] in " \t\r\n":
                position += 1
            if position < len(buffer):
                return True
            if eof:
                return False
            fill()

    def cut_by_the_read(error: json.JSONDecodeError) -> bool:
        return not eof and (error.pos >= len(buffer) - 1 or error.msg.startswith("Unterminated string"))

    fill()
    if not skip_space():
        return
    if buffer[position] != "[":
        raise ValueError("a JSON array file must start with '['")
    position += 1
    expect_value = True  # after '[' and after ','
    first, count = True, 0
    while True:
        if not skip_space():
            raise ValueError("unterminated JSON array")
        character = buffer[position]
        if character == "]" and (first or not expect_value):
            position += 1
            break
        if not expect_value:
            if character != ",":
                raise ValueError(f"expected ',' or ']' after element {count}, found {character!r}")
            position += 1
            expect_value = True
            continue
        if character in ",]":
            raise ValueError(f"expected an element after element {count}, found {character!r}")
        try:
            record, end = decoder.raw_decode(buffer, position)
        except json.JSONDecodeError as error:
            if not cut_by_the_read(error) or len(buffer) - position > MAX_JSON_RECORD_CHARS:
                raise
            fill()
            continue
        if end == len(buffer) and not eof:  # a number may continue in the next read
            fill()
            continue
        position, expect_value, first, count = end, False, False, count + 1
        yield record
    if skip_space():
        raise ValueError(f"unexpected data after the JSON array: {buffer[position]!r} (one array per file)")


def _json_value(record: Any, dotted: str) -> tuple[bool, Any]:
    value = record
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return False, None
        value = value[key]
    return True, value


def _json_typed(value: Any, column) -> Any:
    kind = column.type
    if kind == "string" and not isinstance(value, str):
        raise ConversionFailed(f"{value!r} is not a string")
    if kind in ("date", "timestamp") and not isinstance(value, str):
        raise ConversionFailed(f"{value!r} is not an ISO {kind}")
    if kind == "date":
        from datetime import date

        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ConversionFailed(f"{value!r} is not an ISO date") from None
    if kind in ("integer", "float", "decimal") and isinstance(value, str):
        raise ConversionFailed(f"{value!r} is not a JSON number")
    if kind == "boolean" and not isinstance(value, bool):
        raise ConversionFailed(f"{value!r} is not a boolean")
    return convert(value, kind, column.precision, column.scale)


def read_json(run) -> None:
    config = run.config
    columns = config.columns
    sources = [c.source or c.name for c in columns]
    top_level = {s.split(".")[0] for s in sources}
    for path in _input_files(run, run.io.resolve_path(config.path, config.conn)):
        array = config.format == "array" or (
            config.format == "auto" and not path.name.removesuffix(".gz").endswith((".jsonl", ".ndjson"))
        )
        batch: list[list] = []
        with _open_text(path) as handle:
            try:
                for number, record in enumerate(_json_records(handle, array), start=1):
                    run.count_source(1)
                    row, problem = _json_row(record, columns, sources)
                    if problem is None and config.extra_fields == "fail" and isinstance(record, dict):
                        extra = sorted(set(record) - top_level)
                        if extra:
                            raise BadInputError(
                                f"{path} record {number}: undeclared field(s) {', '.join(extra)}"
                            )
                    if problem is not None:
                        if config.on_bad_records == "fail":
                            raise BadInputError(f"{path} record {number}: bad record: {problem}")
                        run.metrics.rows_dropped += 1
                        run.metrics.reject("bad_record")
                        continue
                    batch.append(row)
                    if len(batch) >= run.chunk_size:
                        emit_rows(run, "out", batch)
                        batch = []
            except json.JSONDecodeError as error:
                raise BadInputError(f"{path}: invalid JSON: {error}") from None
            except ValueError as error:
                if isinstance(error, BadInputError):
                    raise
                raise BadInputError(f"{path}: {error}") from None
        if batch:
            emit_rows(run, "out", batch)


def _json_row(record: Any, columns, sources: list[str]) -> tuple[list | None, str | None]:
    if not isinstance(record, dict):
        return None, "not a JSON object"
    row = []
    for column, source in zip(columns, sources, strict=True):
        _, value = _json_value(record, source)
        if value is None:
            if not column.nullable:
                return None, f"null in non-nullable column {column.name!r}"
            row.append(None)
            continue
        try:
            row.append(_json_typed(value, column))
        except ConversionFailed as error:
            return None, f"column {column.name!r}: {error}"
    return row, None


def read_sql(run) -> None:
    from psycopg import sql

    config = run.config
    columns = config.columns
    sources = [c.source or c.name for c in columns]
    if config.table is not None:
        schema_name, table = config.table.split(".")
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(s) for s in sources), sql.Identifier(schema_name, table)
        )
        params = None
    else:
        query = sql.SQL(config.query)
        # No params, no placeholder parsing: a literal % in the query stays as written.
        params = {name: run.io.render(value) for name, value in config.params.items()} or None
    with run.io.sql_connection(config.conn) as connection, connection.transaction():
        connection.execute("SET TRANSACTION READ ONLY")
        with connection.cursor(name=f"etlkit_{run.component.id}") as cursor:
            cursor.itersize = run.chunk_size
            cursor.execute(query, params)
            names = [d.name for d in cursor.description]
            missing = [s for s in sources if s not in names]
            if missing:
                raise BadInputError(f"{run.component.id}: query result lacks column(s) {', '.join(missing)}")
            indices = [names.index(s) for s in sources]
            while rows := cursor.fetchmany(run.chunk_size):
                run.count_source(len(rows))
                values = list(zip(*rows, strict=True))
                emit_columns(
                    run,
                    "out",
                    [_sql_column(run, c, values[i]) for c, i in zip(columns, indices, strict=True)],
                )


# psycopg's Python type for each column type that needs no conversion (the common case)
_NATIVE_TYPES = {
    "string": str,
    "integer": int,
    "float": float,
    "boolean": bool,
    "date": date,
    "timestamp": datetime,
}


def _sql_column(run, column, values: tuple) -> list | tuple:
    """A fetched column in its declared type: as fetched when every value already has it, else
    converted one by one with the same rules (and messages) as a type_conversion."""
    if not column.nullable and None in values:
        raise BadInputError(f"{run.component.id}: null in non-nullable column {column.name!r}")
    native = _NATIVE_TYPES.get(column.type)
    if native is not None and set(map(type, values)) <= {native, type(None)}:
        return values
    convert_value = converter(column.type, column.precision, column.scale)
    try:
        return [None if v is None else convert_value(v) for v in values]
    except ConversionFailed as error:
        raise BadInputError(
            f"{run.component.id}: column {column.name!r} is not compatible with {column.type}: {error}"
        ) from None


# ---- transforms -----------------------------------------------------------------------------


def filter_rows(run) -> None:
    matches = compile_vector_condition(run.config.condition, as_mapping(run.in_schema()))
    for batch in run.read():
        mask = matches(batch)
        run.emit("pass", batch.filter(mask))
        run.emit("fail", batch.filter(pc.invert(mask)))


def _with_reason(batch: pa.RecordBatch, reason: str | pa.Array) -> pa.RecordBatch:
    reasons = pa.repeat(pa.scalar(reason, pa.string()), batch.num_rows) if isinstance(reason, str) else reason
    return pa.RecordBatch.from_arrays(
        [*batch.columns, reasons], names=[*batch.schema.names, REJECT_REASON_COLUMN]
    )


def split_rows(run) -> None:
    schema = as_mapping(run.in_schema())
    branches = [
        (b.port, compile_vector_condition(b.when, schema), b.reject_reason) for b in run.config.branches
    ]
    default = run.config.default_port
    for batch in run.read():
        remaining = pa.repeat(True, batch.num_rows)
        for port, matches, reason in branches:
            taken = pc.and_(remaining, matches(batch))
            remaining = pc.and_(remaining, pc.invert(taken))
            selected = batch.filter(taken)
            if reason:
                if selected.num_rows:
                    run.metrics.reject(reason, selected.num_rows)
                selected = _with_reason(selected, reason)
            run.emit(port, selected)
        run.emit(default, batch.filter(remaining))


def convert_types(run) -> None:
    config = run.config
    in_schema = run.in_schema()
    names = [c.name for c in in_schema]
    out_schema = run.out_schema("out")
    out_arrow = arrow_schema(out_schema)
    null_texts = arrow_array(config.null_values, pa.string())
    rules = [(names.index(r.column), r, r.on_error or config.on_error) for r in config.rules]
    for batch in run.read():
        columns = list(batch.columns)
        reason = pa.repeat(pa.scalar(None, pa.string()), batch.num_rows)
        for index, rule, on_error in rules:
            values = batch.column(index)
            if pa.types.is_string(values.type):
                if config.trim:
                    values = pc.utf8_trim_whitespace(values)
                values = pc.if_else(
                    pc.is_in(values, value_set=null_texts), pa.scalar(None, pa.string()), values
                )
            converted = convert_column(values, rule, out_schema[index])
            failures = pc.sum(converted.failed).as_py() or 0
            if failures:
                run.metrics.count_detail("conversion_failures", rule.column, failures)
                if on_error == "fail":
                    value = converted.first_failure(values)
                    try:
                        converter(rule.to, rule.precision, rule.scale, rule.format, rule.timezone)(value)
                        detail = f"{value!r} is not {rule.to}"
                    except ConversionFailed as error:
                        detail = str(error)
                    raise BadInputError(f"{run.component.id}: column {rule.column!r}: {detail}")
                if on_error == "reject":
                    reason = pc.if_else(
                        pc.and_(converted.failed, pc.is_null(reason)),
                        f"conversion_failed:{rule.column}",
                        reason,
                    )
            columns[index] = converted.values
        rejected = pc.is_valid(reason)
        converted_batch = pa.RecordBatch.from_arrays(columns, schema=out_arrow)
        if pc.any(rejected).as_py():
            rejects = _with_reason(batch, reason).filter(rejected)
            for text, count in Counter(rejects.column(REJECT_REASON_COLUMN).to_pylist()).items():
                run.metrics.reject(text, count)
            run.emit("out", converted_batch.filter(pc.invert(rejected)))
            run.emit("reject", rejects)
        else:
            run.emit("out", converted_batch)
            run.emit("reject", _with_reason(batch.slice(0, 0), arrow_array([], pa.string())))


def _mapping_getters(run, schema):
    known = as_mapping(schema)
    names = list(known)
    getters = []
    for mapped, out_column in zip(run.config.columns, run.out_schema("out"), strict=True):
        if mapped.expr is None:
            index = names.index(mapped.from_ or mapped.name)
            getters.append(lambda row, i=index: row[i])
            continue
        evaluate = compile_expression(mapped.expr, known).evaluate
        if mapped.type is None:
            getters.append(evaluate)
            continue

        def cast(row, evaluate=evaluate, column=out_column):
            value = evaluate(row)
            if value is None:
                return None
            try:
                return convert(value, column.type, column.precision, column.scale)
            except ConversionFailed as error:
                raise BadInputError(
                    f"{run.component.id}: column {column.name!r}: cast failed: {error}"
                ) from None

        getters.append(cast)
    return getters


_ARROW_CASTS = {  # (from, to) that Arrow's safe cast does exactly as conversion.convert
    ("integer", "float"),
    ("integer", "decimal"),
    ("decimal", "decimal"),
    ("decimal", "integer"),
}


def _mapping_vectors(run, schema) -> list:
    """One function per output column: a batch of ``schema`` -> the column's Arrow array."""
    known = as_mapping(schema)
    names = list(known)
    vectors = []
    for mapped, out_column in zip(run.config.columns, run.out_schema("out"), strict=True):
        if mapped.expr is None:
            index = names.index(mapped.from_ or mapped.name)
            vectors.append(lambda batch, i=index: batch.column(i))
            continue
        compiled = compile_vector(mapped.expr, known)
        vectors.append(_typed_vector(run, compiled, out_column, cast=mapped.type is not None))
    return vectors


def _typed_vector(run, compiled, column, cast: bool):
    target = arrow_type(column)
    row_cast = converter(column.type, column.precision, column.scale) if cast else None

    def by_value(values: list) -> pa.Array:
        if row_cast is None:
            return _column_array(values, column)
        converted = []
        for value in values:
            try:
                converted.append(None if value is None else row_cast(value))
            except ConversionFailed as error:
                raise BadInputError(
                    f"{run.component.id}: column {column.name!r}: cast failed: {error}"
                ) from None
        return arrow_array(converted, target)

    def evaluate(batch: pa.RecordBatch) -> pa.Array:
        values = compiled.evaluate(batch)
        if isinstance(values, pa.Scalar):
            values = (
                pa.repeat(values, batch.num_rows) if values.is_valid else pa.nulls(batch.num_rows, target)
            )
        if values.type == target:
            return values
        if pa.types.is_null(values.type):
            return pa.nulls(len(values), target)
        if (compiled.type, column.type) in _ARROW_CASTS or compiled.type == column.type:
            try:
                return pc.cast(values, target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass  # out of range or more places than the scale: the row rules decide
        return by_value(values.to_pylist())

    return evaluate


def _mapped(run, vectors, batch: pa.RecordBatch) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [vector(batch) for vector in vectors], schema=arrow_schema(run.out_schema("out"))
    )


def map_schema(run) -> None:
    if run.config.join is not None:
        _join(run)
        return
    vectors = _mapping_vectors(run, run.in_schema())
    for batch in run.read():
        run.emit("out", _mapped(run, vectors, batch))


def _join(run) -> None:
    join = run.config.join
    left_schema, right_schema = run.in_schema("left"), run.in_schema("right")
    left_types = {c.name: arrow_type(c) for c in left_schema}
    right_types = {c.name: arrow_type(c) for c in right_schema}
    if any(left_types[a] != right_types[b] for a, b in zip(join.left_on, join.right_on, strict=True)):
        _join_rows(run)  # keys of different types compare by value in the row form
        return
    vectors = _mapping_vectors(run, join_input_schema(left_schema, right_schema))
    left_names = [f"l{i}" for i in range(len(left_schema))]
    right_names = [f"r{i}" for i in range(len(right_schema))]
    left_keys = [left_names[[c.name for c in left_schema].index(k)] for k in join.left_on]
    right_keys = [right_names[[c.name for c in right_schema].index(k)] for k in join.right_on]
    right = _right_table(run, right_names, join.max_right_rows)
    matched = np.zeros(right.num_rows, dtype=bool)
    joined_names = [*left_names, *right_names]
    how = {"inner": "inner", "right": "inner", "left": "left outer", "full": "left outer"}[join.how]
    lookup = _unique_key_lookup(right, right_keys)
    right_columns = right.select(right_names)
    for batch in run.read("left"):
        if lookup is not None:
            piece = _join_by_lookup(
                batch.rename_columns(left_names), left_keys[0], lookup, right_columns, how
            )
            matched[pc.drop_null(piece.column("_right_row_found")).to_numpy()] = True
            if piece.num_rows:
                run.emit("out", _mapped(run, vectors, piece.drop_columns(["_right_row_found"])))
            continue
        left = pa.Table.from_batches([batch]).rename_columns(left_names)
        left = left.append_column("_left_row", pa.array(np.arange(left.num_rows, dtype=np.int64)))
        result = left.join(
            right,
            keys=left_keys,
            right_keys=right_keys,
            join_type=how,
            coalesce_keys=False,
            use_threads=False,
        )
        # Arrow's hash join does not keep order: put rows back in left order, matches in right order.
        result = result.sort_by([("_left_row", "ascending"), ("_right_row", "ascending")])
        hits = result.column("_right_row").drop_null().to_numpy()
        matched[hits] = True
        for piece in result.select(joined_names).to_batches(max_chunksize=run.chunk_size):
            run.emit("out", _mapped(run, vectors, piece))
    if join.how in ("right", "full"):
        unmatched = right.filter(pa.array(~matched)).select(right_names)
        for piece in unmatched.to_batches(max_chunksize=run.chunk_size):
            nulls = [pa.nulls(piece.num_rows, left_types[c.name]) for c in left_schema]
            padded = pa.RecordBatch.from_arrays([*nulls, *piece.columns], names=joined_names)
            run.emit("out", _mapped(run, vectors, padded))


def _unique_key_lookup(right: pa.Table, right_keys: list[str]) -> pa.Array | None:
    """The right input's key column when one key, of a type without NaN, is unique among its non-null
    values: then each left row matches at most one right row, found by one ``index_in`` per left
    batch, already in left order, where Arrow's hash join runs a join plan per batch whose output
    must be sorted back into left order. None otherwise (the hash join)."""
    if len(right_keys) != 1:
        return None
    keys = right.column(right_keys[0]).combine_chunks()
    if pa.types.is_floating(keys.type) or pa.types.is_nested(keys.type):
        return None
    distinct = pc.count_distinct(keys, mode="only_valid").as_py()
    return keys if distinct == len(keys) - keys.null_count else None


def _join_by_lookup(batch, left_key: str, lookup, right: pa.Table, how: str) -> pa.RecordBatch:
    """One left batch joined to the right row of its key (``_unique_key_lookup``), in left order;
    null keys match nothing. A last column, ``_right_row_found``, holds the matched right row."""
    rows = pc.index_in(batch.column(left_key), value_set=lookup, skip_nulls=True)
    if how == "inner":
        found = pc.is_valid(rows)
        batch, rows = batch.filter(found), rows.filter(found)
    taken = right.take(rows)
    columns = [*batch.columns, *(column.combine_chunks() for column in taken.columns), rows]
    return pa.RecordBatch.from_arrays(
        columns, names=[*batch.schema.names, *right.schema.names, "_right_row_found"]
    )


def _right_table(run, names: list[str], limit: int) -> pa.Table:
    batches, rows = [], 0
    for batch in run.read("right"):
        rows += batch.num_rows
        if rows > limit:
            raise BadInputError(f"{run.component.id}: right input exceeds max_right_rows={limit}")
        batches.append(batch.rename_columns(names))
    schema = pa.schema(
        [pa.field(n, t) for n, t in zip(names, [arrow_type(c) for c in run.in_schema("right")], strict=True)]
    )
    table = pa.Table.from_batches(batches, schema=schema)
    return table.append_column("_right_row", pa.array(np.arange(table.num_rows, dtype=np.int64)))


def _join_rows(run) -> None:
    join = run.config.join
    left_schema, right_schema = run.in_schema("left"), run.in_schema("right")
    getters = _mapping_getters(run, join_input_schema(left_schema, right_schema))
    left_keys = [[c.name for c in left_schema].index(k) for k in join.left_on]
    right_keys = [[c.name for c in right_schema].index(k) for k in join.right_on]
    left_pad, right_pad = [None] * len(left_schema), [None] * len(right_schema)

    right_rows: list[list] = []
    index: dict[tuple, list[int]] = {}
    for batch in run.read("right"):
        for row in rows_of(batch):
            if len(right_rows) >= join.max_right_rows:
                raise BadInputError(
                    f"{run.component.id}: right input exceeds max_right_rows={join.max_right_rows}"
                )
            key = tuple(row[i] for i in right_keys)
            if None not in key:
                index.setdefault(key, []).append(len(right_rows))
            right_rows.append(row)
    matched = [False] * len(right_rows)
    keep_left = join.how in ("left", "full")

    def joined(rows):
        for left in rows:
            key = tuple(left[i] for i in left_keys)
            positions = index.get(key, ()) if None not in key else ()
            for position in positions:
                matched[position] = True
                yield left + right_rows[position]
            if not positions and keep_left:
                yield left + right_pad

    for left_batch in run.read("left"):
        for batch in chunked(joined(rows_of(left_batch)), run.chunk_size):
            emit_rows(run, "out", [[get(row) for get in getters] for row in batch])
    if join.how in ("right", "full"):
        unmatched = (left_pad + row for row, hit in zip(right_rows, matched, strict=True) if not hit)
        for batch in chunked(unmatched, run.chunk_size):
            emit_rows(run, "out", [[get(row) for get in getters] for row in batch])


class _Aggregate:
    __slots__ = ("count", "value")

    def __init__(self):
        self.count = 0
        self.value = None


def _partial_aggregates(batch: pa.RecordBatch, group_indices: list[int], specs, schema) -> list[tuple]:
    """Per group of one batch, Arrow's (count, value) of every aggregate (value: sum, min or max)."""
    columns = {f"k{n}": batch.column(i) for n, i in enumerate(group_indices)}
    aggregations = []
    for n, (function, index, _) in enumerate(specs):
        if index is None:
            aggregations.append(([], "count_all"))
            continue
        values = batch.column(index)
        if function in ("sum", "avg") and schema[index].type == "integer":
            values = pc.cast(
                values, pa.decimal128(38, 0)
            )  # an int64 sum may overflow; 38 digits hold 50k rows
        columns[f"v{n}"] = values
        aggregations.append((f"v{n}", "count"))
        if function != "count":
            aggregations.append((f"v{n}", {"avg": "sum"}.get(function, function)))
    table = pa.table(columns) if columns else pa.table({"_": pa.nulls(batch.num_rows, pa.bool_())})
    result = table.group_by([f"k{n}" for n in range(len(group_indices))], use_threads=False).aggregate(
        aggregations
    )
    keys = [result.column(f"k{n}").to_pylist() for n in range(len(group_indices))]
    parts = []
    for n, (function, index, _) in enumerate(specs):
        if index is None:
            counts = result.column("count_all").to_pylist()
            parts.append(list(zip(counts, [None] * len(counts), strict=True)))
            continue
        counts = result.column(f"v{n}_count").to_pylist()
        name = f"v{n}_{ {'avg': 'sum'}.get(function, function) }"
        values = result.column(name).to_pylist() if function != "count" else [None] * len(counts)
        if function in ("sum", "avg") and schema[index].type == "integer":
            values = [None if v is None else int(v) for v in values]
        parts.append(list(zip(counts, values, strict=True)))
    return [(tuple(k[r] for k in keys), [p[r] for p in parts]) for r in range(result.num_rows)]


def _merge_partials(run, groups: dict, partial: list[tuple], specs, key_count: int) -> None:
    for key, states_in in partial:
        states = groups.get(key)
        if states is None:
            if len(groups) >= run.config.max_groups:
                raise BadInputError(
                    f"{run.component.id}: more than max_groups={run.config.max_groups} groups"
                )
            states = groups[key] = [_Aggregate() for _ in specs]
        for state, (count, value), (function, _, _) in zip(states, states_in, specs, strict=True):
            state.count += count
            if value is None or function == "count":
                continue
            if function in ("sum", "avg"):
                state.value = value if state.value is None else state.value + value
            elif state.value is None or (value < state.value if function == "min" else value > state.value):
                state.value = value


def aggregate(run) -> None:
    # Sums of decimal(38, s) columns need more than the default 28 digits; 80 is exact for them.
    with localcontext(Context(prec=80)):
        _aggregate(run)


def _aggregate(run) -> None:
    config = run.config
    names = [c.name for c in run.in_schema()]
    out_schema = run.out_schema("out")
    group_indices = [names.index(n) for n in config.group_by]
    specs = [
        (a.function, names.index(a.column) if a.column else None, out_schema[len(group_indices) + k])
        for k, a in enumerate(config.aggregates)
    ]
    groups: dict[tuple, list[_Aggregate]] = {}
    schema = run.in_schema()
    for batch in run.read():
        try:
            partial = _partial_aggregates(batch, group_indices, specs, schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            partial = None  # e.g. a batch sum beyond 38 digits: the row form adds exactly
        if partial is not None:
            _merge_partials(run, groups, partial, specs, len(group_indices))
            continue
        for row in rows_of(batch):
            key = tuple(row[i] for i in group_indices)
            states = groups.get(key)
            if states is None:
                if len(groups) >= config.max_groups:
                    raise BadInputError(
                        f"{run.component.id}: more than max_groups={config.max_groups} groups"
                    )
                states = groups[key] = [_Aggregate() for _ in specs]
            for state, (function, index, _) in zip(states, specs, strict=True):
                value = row[index] if index is not None else True
                if value is None:
                    continue
                state.count += 1
                if function in ("sum", "avg"):
                    state.value = value if state.value is None else state.value + value
                elif (
                    function == "min"
                    and (state.value is None or value < state.value)
                    or function == "max"
                    and (state.value is None or value > state.value)
                ):
                    state.value = value
    if not groups and not group_indices:
        groups[()] = [_Aggregate() for _ in specs]

    def result(state: _Aggregate, function: str, column) -> Any:
        if function == "count":
            return state.count
        if state.value is None:
            return None
        value = state.value
        if function == "avg":
            value = value / state.count
        if column.type == "decimal":
            return Decimal(value).quantize(Decimal(1).scaleb(-column.scale), rounding=ROUND_HALF_EVEN)
        return value

    ordered = sorted(groups.items(), key=lambda item: [(v is None, v) for v in item[0]])
    rows = (
        [*key, *(result(s, function, column) for s, (function, _, column) in zip(states, specs, strict=True))]
        for key, states in ordered
    )
    for batch in chunked(rows, run.chunk_size):
        emit_rows(run, "out", batch)


def merge(run) -> None:
    out_schema = arrow_schema(run.out_schema("out"))
    for ref in run.validated.inputs[run.component.id]["in"]:
        names = [c.name for c in run.validated.out_schemas[(ref.source, ref.port)]]
        for batch in run.read_route("in", ref):
            arrays = [
                batch.column(names.index(field.name))
                if field.name in names
                else pa.nulls(batch.num_rows, field.type)
                for field in out_schema
            ]
            run.emit("out", pa.RecordBatch.from_arrays(arrays, schema=out_schema))


# ---- writers --------------------------------------------------------------------------------


def write_csv(run) -> None:
    config = run.config
    names, batches = _writer_batches(run)
    with _atomic_output(run, run.io.resolve_path(config.path, config.conn)) as handle:
        if config.header:
            header = io.StringIO()
            csv.writer(header, delimiter=config.delimiter, lineterminator="\n").writerow(names)
            handle.write(header.getvalue().encode())
        for batch in batches:
            handle.write(csv_bytes(batch, config.delimiter, config.null_value))
            run.count_target(batch.num_rows)


def _json_text(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_json_text(v)}" for k, v in value.items()) + "}"
    if value is None or isinstance(value, str | bool | int | float):
        return json.dumps(value)
    return json.dumps(canonical_text(value))


def _json_record(names: list[str], row: list, nest: bool) -> dict:
    if not nest:
        return dict(zip(names, row, strict=True))
    record: dict = {}
    for name, value in zip(names, row, strict=True):
        *parents, leaf = name.split(".")
        node = record
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return record


def write_json(run) -> None:
    config = run.config
    names, chunks = _writer_rows(run)
    array = config.format == "array"
    with _atomic_output(run, run.io.resolve_path(config.path, config.conn)) as stream:
        handle = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        first = True
        if array:
            handle.write("[")
        for rows in chunks:
            for row in rows:
                text = _json_text(_json_record(names, row, config.nest))
                if array:
                    handle.write(("\n" if first else ",\n") + text)
                else:
                    handle.write(text + "\n")
                first = False
            run.count_target(len(rows))
        if array:
            handle.write("\n]\n")
        handle.flush()
        handle.detach()  # the stream is closed (and the file renamed) by _atomic_output


def write_sql(*args, **options) -> None:
    """``sqlwrite.write_sql``, imported when used: psycopg is ~16 MiB a component without SQL need not hold."""
    from etlkit.jobs.sqlwrite import write_sql as write

    write(*args, **options)


def write_sql_rows(run) -> None:
    names, chunks = _writer_batches(run)
    schema = {c.name: c for c in run.in_schema()}

    def counted() -> Iterator[pa.RecordBatch]:
        for batch in chunks:
            yield batch
            run.count_target(batch.num_rows)

    append_key = (
        run.io.append_key(run.component.id, run.config.table) if run.config.mode == "append" else None
    )
    with run.io.sql_connection(run.config.conn) as connection:
        write_sql(
            connection,
            run.config,
            [schema[n] for n in names],
            counted(),
            run.component.id,
            append_key=append_key,
        )


RUNNERS = {
    "read_csv": read_csv,
    "read_json": read_json,
    "read_sql": read_sql,
    "filter": filter_rows,
    "split": split_rows,
    "type_conversion": convert_types,
    "schema_mapping": map_schema,
    "aggregation": aggregate,
    "merge": merge,
    "write_csv": write_csv,
    "write_json": write_json,
    "write_sql": write_sql_rows,
}
