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
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from pathlib import Path
from typing import Any

from psycopg import sql

from etlkit.common.errors import BadInputError
from etlkit.jobs.conversion import ConversionFailed, canonical_text, convert, converter
from etlkit.jobs.expressions import compile_condition, compile_expression
from etlkit.jobs.sqlwrite import write_sql
from etlkit.jobs.validation import as_mapping, join_input_schema


def chunked(rows: Iterator[list], size: int) -> Iterator[list[list]]:
    batch: list[list] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


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
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    try:
        yield text
        text.close()
        raw.close()
        os.replace(temporary, path)
    except BaseException:
        text.close()
        raw.close()
        temporary.unlink(missing_ok=True)
        raise


def _writer_rows(run) -> tuple[list[str], Iterator[list[list]]]:
    schema = run.in_schema()
    names = [c.name for c in schema]
    if run.config.columns is None:
        return names, run.read()
    indices = [names.index(name) for name in run.config.columns]
    return list(run.config.columns), ([[row[i] for i in indices] for row in rows] for rows in run.read())


# ---- sources --------------------------------------------------------------------------------


def read_csv(run) -> None:
    config = run.config
    columns = config.columns
    nulls = set(config.null_values)
    required = [i for i, c in enumerate(columns) if not c.nullable]
    for path in _input_files(run, run.io.resolve_path(config.path, config.conn)):
        with _open_text(path) as handle:
            reader = csv.reader(handle, delimiter=config.delimiter)
            if config.header:
                header = next(reader, None) or []
                indices = _header_indices(run, header, path)
                width = len(header)
            else:
                indices, width = list(range(len(columns))), len(columns)
            batch: list[list] = []
            records = 0  # counted per chunk: a per-row call costs a quarter of the reader's time
            for fields in reader:
                if not fields:
                    continue
                records += 1
                problem = None
                if len(fields) != width and not (
                    not config.header and config.extra_columns == "ignore" and len(fields) > width
                ):
                    problem = f"expected {width} fields, got {len(fields)}"
                else:
                    row = [None if (v := fields[i]) in nulls else v for i in indices]
                    for i in required:
                        if row[i] is None:
                            problem = f"null in non-nullable column {columns[i].name!r}"
                            break
                if problem is not None:
                    if config.on_bad_lines == "fail":
                        raise BadInputError(f"{path} line {reader.line_num}: malformed line: {problem}")
                    run.metrics.rows_dropped += 1
                    run.metrics.reject("malformed_line")
                    continue
                batch.append(row)
                if len(batch) >= run.chunk_size:
                    run.count_source(records)
                    run.emit("out", batch)
                    batch, records = [], 0
            run.count_source(records)
            if batch:
                run.emit("out", batch)


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


def _json_array_records(handle) -> Iterator[Any]:
    """Elements of a top-level JSON array, parsed incrementally from 64 KiB reads."""
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

    fill()
    if not skip_space():
        return
    if buffer[position] != "[":
        raise ValueError("a JSON array file must start with '['")
    position += 1
    while True:
        if not skip_space():
            raise ValueError("unterminated JSON array")
        if buffer[position] == "]":
            return
        if buffer[position] == ",":
            position += 1
            continue
        try:
            record, end = decoder.raw_decode(buffer, position)
        except json.JSONDecodeError:
            if eof:
                raise
            fill()
            continue
        if end == len(buffer) and not eof:  # a number may continue in the next read
            fill()
            continue
        position = end
        yield record


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
                        run.emit("out", batch)
                        batch = []
            except json.JSONDecodeError as error:
                raise BadInputError(f"{path}: invalid JSON: {error}") from None
            except ValueError as error:
                if isinstance(error, BadInputError):
                    raise
                raise BadInputError(f"{path}: {error}") from None
        if batch:
            run.emit("out", batch)


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
                batch = []
                for record in rows:
                    row = []
                    for column, index in zip(columns, indices, strict=True):
                        value = record[index]
                        if value is None:
                            if not column.nullable:
                                raise BadInputError(
                                    f"{run.component.id}: null in non-nullable column {column.name!r}"
                                )
                            row.append(None)
                            continue
                        try:
                            row.append(convert(value, column.type, column.precision, column.scale))
                        except ConversionFailed as error:
                            raise BadInputError(
                                f"{run.component.id}: column {column.name!r} is not compatible with "
                                f"{column.type}: {error}"
                            ) from None
                    batch.append(row)
                run.emit("out", batch)


# ---- transforms -----------------------------------------------------------------------------


def filter_rows(run) -> None:
    matches = compile_condition(run.config.condition, as_mapping(run.in_schema()))
    for rows in run.read():
        passed, failed = [], []
        for row in rows:
            (passed if matches(row) else failed).append(row)
        run.emit("pass", passed)
        run.emit("fail", failed)


def split_rows(run) -> None:
    schema = as_mapping(run.in_schema())
    branches = [(b.port, compile_condition(b.when, schema), b.reject_reason) for b in run.config.branches]
    default = run.config.default_port
    for rows in run.read():
        outputs: dict[str, list] = {port: [] for port, _, _ in branches}
        outputs[default] = []
        for row in rows:
            for port, matches, reason in branches:
                if matches(row):
                    if reason:
                        outputs[port].append([*row, reason])
                        run.metrics.reject(reason)
                    else:
                        outputs[port].append(row)
                    break
            else:
                outputs[default].append(row)
        for port, selected in outputs.items():
            run.emit(port, selected)


def convert_types(run) -> None:
    config = run.config
    names = [c.name for c in run.in_schema()]
    nulls = set(config.null_values)
    rules = [
        (
            names.index(r.column),
            r.column,
            converter(r.to, r.precision, r.scale, r.format, r.timezone),
            r.on_error or config.on_error,
        )
        for r in config.rules
    ]
    for rows in run.read():
        converted_rows, rejected_rows = [], []
        for row in rows:
            converted = list(row)
            reason = None
            for index, column, convert_value, on_error in rules:
                value = row[index]
                if isinstance(value, str):
                    if config.trim:
                        value = value.strip()
                    if value in nulls:
                        converted[index] = None
                        continue
                if value is None:
                    continue
                try:
                    converted[index] = convert_value(value)
                except ConversionFailed as error:
                    run.metrics.count_detail("conversion_failures", column)
                    if on_error == "fail":
                        raise BadInputError(f"{run.component.id}: column {column!r}: {error}") from None
                    converted[index] = None
                    if on_error == "reject" and reason is None:
                        reason = f"conversion_failed:{column}"
            if reason is None:
                converted_rows.append(converted)
            else:
                rejected_rows.append([*row, reason])
                run.metrics.reject(reason)
        run.emit("out", converted_rows)
        run.emit("reject", rejected_rows)


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


def map_schema(run) -> None:
    if run.config.join is not None:
        _join(run)
        return
    getters = _mapping_getters(run, run.in_schema())
    for rows in run.read():
        run.emit("out", [[get(row) for get in getters] for row in rows])


def _join(run) -> None:
    join = run.config.join
    left_schema, right_schema = run.in_schema("left"), run.in_schema("right")
    getters = _mapping_getters(run, join_input_schema(left_schema, right_schema))
    left_keys = [[c.name for c in left_schema].index(k) for k in join.left_on]
    right_keys = [[c.name for c in right_schema].index(k) for k in join.right_on]
    left_pad, right_pad = [None] * len(left_schema), [None] * len(right_schema)

    right_rows: list[list] = []
    index: dict[tuple, list[int]] = {}
    for rows in run.read("right"):
        for row in rows:
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

    for rows in run.read("left"):
        for batch in chunked(joined(rows), run.chunk_size):
            run.emit("out", [[get(row) for get in getters] for row in batch])
    if join.how in ("right", "full"):
        unmatched = (left_pad + row for row, hit in zip(right_rows, matched, strict=True) if not hit)
        for batch in chunked(unmatched, run.chunk_size):
            run.emit("out", [[get(row) for get in getters] for row in batch])


class _Aggregate:
    __slots__ = ("count", "value")

    def __init__(self):
        self.count = 0
        self.value = None


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
    for rows in run.read():
        for row in rows:
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
        run.emit("out", batch)


def merge(run) -> None:
    out_names = [c.name for c in run.out_schema("out")]
    for ref in run.validated.inputs[run.component.id]["in"]:
        names = [c.name for c in run.validated.out_schemas[(ref.source, ref.port)]]
        positions = [names.index(n) if n in names else None for n in out_names]
        identity = positions == list(range(len(names))) and len(names) == len(out_names)
        for rows in run.read_route("in", ref):
            if identity:
                run.emit("out", rows)
            else:
                run.emit("out", [[row[p] if p is not None else None for p in positions] for row in rows])


# ---- writers --------------------------------------------------------------------------------


def write_csv(run) -> None:
    config = run.config
    names, chunks = _writer_rows(run)
    null = config.null_value
    with _atomic_output(run, run.io.resolve_path(config.path, config.conn)) as handle:
        writer = csv.writer(handle, delimiter=config.delimiter, lineterminator="\n")
        if config.header:
            writer.writerow(names)
        for rows in chunks:
            writer.writerows([null if v is None else canonical_text(v) for v in row] for row in rows)
            run.count_target(len(rows))


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
    with _atomic_output(run, run.io.resolve_path(config.path, config.conn)) as handle:
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


def write_sql_rows(run) -> None:
    names, chunks = _writer_rows(run)
    schema = {c.name: c for c in run.in_schema()}

    def counted() -> Iterator[list[list]]:
        for rows in chunks:
            yield rows
            run.count_target(len(rows))

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
