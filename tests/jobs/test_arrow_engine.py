"""The Arrow engine: strict readers, vectorised expressions and conversions, Parquet staging, port checks."""

from __future__ import annotations

import csv
import io
import json
import random
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etlkit.common.errors import BadInputError
from etlkit.jobs import components as component_module
from etlkit.jobs.columns import Column
from etlkit.jobs.conversion import ConversionFailed, converter
from etlkit.jobs.csvread import LineGuard
from etlkit.jobs.csvtext import csv_bytes
from etlkit.jobs.expressions import compile_condition, compile_vector_condition
from etlkit.jobs.runtime import run_job
from etlkit.jobs.staging import MANIFEST_FILE, PortWriter, read_port
from etlkit.jobs.validation import validate_job_text
from etlkit.jobs.vconvert import convert_column
from tests.jobs.test_runtime import csv_reader, csv_writer, job, make_io, run

pytestmark = pytest.mark.jobs


def json_reader(path: str, **config) -> dict:
    return {
        "id": "read",
        "type": "read_json",
        "config": {"path": path, "columns": [{"name": "id", "type": "integer"}], **config},
        "routes": {"out": ["out"]},
    }


# ---- read_json is as strict as json.load ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"id": 1} {"id": 2}]', "expected ',' or ']' after element 1"),
        ('[{"id": 1},,{"id": 2}]', "expected an element after element 1"),
        ('[{"id": 1},]', "expected an element after element 1"),
        ('[{"id": 1}] trailing', "unexpected data after the JSON array"),
        ('[{"id": 1}][{"id": 2}]', "unexpected data after the JSON array: '\\['"),
    ],
)
def test_read_json_refuses_what_json_load_refuses(tmp_path, text, message):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.json").write_text(text)
    spec = job("strict_json", json_reader("in.json"), csv_writer("out", "out.csv"))
    with pytest.raises(BadInputError, match=rf"in\.json: {message}"):
        run(tmp_path, spec)
    assert not (tmp_path / "data" / "out.csv").exists()


def test_a_malformed_json_element_fails_at_once_without_reading_the_rest(monkeypatch):
    text = '[{"id": 1}, {"id": tru}, ' + ", ".join(['{"id": 3}'] * 50_000) + "]"
    reads = []

    class CountingReader(io.StringIO):
        def read(self, size=-1):
            reads.append(size)
            return super().read(size)

    with pytest.raises(json.JSONDecodeError):
        list(component_module._json_array_records(CountingReader(text)))
    assert len(reads) == 1  # the file is ~500 KiB: the old parser read all of it, 64 KiB at a time


# ---- read_csv: every line accounted for ----------------------------------------------------------


def test_blank_lines_and_unbalanced_quotes_are_rejects_with_their_lines_not_skipped_or_merged(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.csv").write_text('id,name\n1,a\n\n2,"b\n3,c\n4,"d, e"\n')
    spec = job(
        "strict_csv",
        csv_reader("in.csv", ["id", "name"], ["out"], on_bad_lines="drop"),
        csv_writer("out", "out.csv"),
    )
    results, data = run(tmp_path, spec)
    # 2,"b is refused alone: the old parser read 'b\n3,c\n4,' into one value, losing line 5.
    assert (data / "out.csv").read_text() == 'id,name\n1,a\n3,c\n4,"d, e"\n'
    read = results["read"]
    assert (read.rows_in, read.rows_out, read.rows_dropped) == ({"source": 5}, {"out": 3}, 2)
    assert dict(read.reject_reasons) == {"malformed_line": 2}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,name\n1,a\n\n2,b\n", r"line 3: malformed line: blank line"),
        ('id,name\n1,a\n2,"b\n3,c\n', r"line 3: malformed line: unbalanced quote"),
        ("id,name\n\n1,a\n2,b,c\n", r"line 2: malformed line: blank line"),
        ("id,name\n\n\n1,a\n2\n", r"line 2: malformed line: blank line"),
    ],
)
def test_bad_lines_fail_naming_the_physical_line(tmp_path, text, message):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.csv").write_text(text)
    spec = job("bad_line", csv_reader("in.csv", ["id", "name"], ["out"]), csv_writer("out", "out.csv"))
    with pytest.raises(BadInputError, match=rf"in\.csv {message}"):
        run(tmp_path, spec)


def test_wrong_field_count_after_removed_lines_names_its_physical_line(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.csv").write_text("id,name\n1,a\n\n2,b\n\n3,c,EXTRA\n")
    spec = job("line_numbers", csv_reader("in.csv", ["id", "name"], ["out"]), csv_writer("out", "out.csv"))
    # The blank lines come first in the file, and the error names the first bad line.
    with pytest.raises(BadInputError, match=r"line 3: malformed line: blank line"):
        run(tmp_path, spec)
    (tmp_path / "data" / "in.csv").write_text('id,name\n1,"a\n2,b\n3,c,EXTRA\n')
    spec["name"] = "line_numbers_2"
    with pytest.raises(BadInputError, match=r"line 2: malformed line: unbalanced quote"):
        run(tmp_path, spec)


def test_field_count_error_counts_physical_lines_around_removed_ones(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.csv").write_text("id,name\n1,a\n\n2,b\n3,c,EXTRA\n")
    spec = job(
        "count_lines",
        csv_reader("in.csv", ["id", "name"], ["out"], on_bad_lines="drop"),
        csv_writer("out", "out.csv"),
    )
    results, data = run(tmp_path, spec)
    assert (data / "out.csv").read_text() == "id,name\n1,a\n2,b\n"
    assert results["read"].reject_reasons == {"malformed_line": 2}
    from etlkit.jobs.csvread import InvalidRows, LineGuard, guarded_batches

    guard = LineGuard(pa.BufferReader(b"id,name\n1,a\n\n2,b\n3,c,EXTRA\n\n4,d,e\n"))
    guard.header_line()
    handler = InvalidRows(guard, 2, False, ",")
    batches = list(guarded_batches(guard, ["a", "b"], handler, ",", [""]))
    assert handler.problems == [(5, "expected 2 fields, got 3"), (7, "expected 2 fields, got 3")]
    assert [(bad.line, bad.reason) for bad in guard.bad] == [(3, "blank line"), (6, "blank line")]
    assert sum(b.num_rows for b in batches) == 2


def test_duplicate_header_columns_are_an_error(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.csv").write_text("id,name,name\n1,a,b\n")
    spec = job("dup_header", csv_reader("in.csv", ["id", "name"], ["out"]), csv_writer("out", "out.csv"))
    with pytest.raises(BadInputError, match=r"in\.csv: duplicate header column\(s\) name"):
        run(tmp_path, spec)


# ---- conversions: ASCII digits, and the vector path agrees with the row converters ----------------


def conversion_job(on_error: str = "reject") -> dict:
    return job(
        "ascii_digits",
        csv_reader("in.csv", ["id", "amount", "day"], ["convert"]),
        {
            "id": "convert",
            "type": "type_conversion",
            "config": {
                "on_error": on_error,
                "rules": [
                    {"column": "id", "to": "integer"},
                    {"column": "amount", "to": "decimal", "precision": 8, "scale": 2},
                    {"column": "day", "to": "date"},
                ],
            },
            "routes": {"out": ["out"], "reject": ["rejects"]},
        },
        csv_writer("out", "out.csv"),
        csv_writer("rejects", "rejects.csv"),
    )


def test_non_ascii_digits_are_conversion_failures(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.csv").write_text(
        "id,amount,day\n1,2.50,2025-03-02\n١٢,1.00,2025-03-02\n3,٣.00,2025-03-02\n4,1.00,٢٠٢٥-03-02\n",
        encoding="utf-8",
    )
    results, data = run(tmp_path, conversion_job())
    assert (data / "out.csv").read_text() == "id,amount,day\n1,2.50,2025-03-02\n"
    assert results["convert"].reject_reasons == {
        "conversion_failed:id": 1,
        "conversion_failed:amount": 1,
        "conversion_failed:day": 1,
    }
    for to, value in (("integer", "١٢"), ("float", "١.5"), ("decimal", "٣.00"), ("date", "٢٠٢٥-03-02")):
        with pytest.raises(ConversionFailed):
            converter(to, 8, 2)(value)


CONVERSION_SAMPLES = [
    "0", "+7", "-12", "007", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
    "1.5", "1.", ".5", "-.25", "1e3", "1E-3", "1e999", "nan", "inf", "12.345", "12.340", "123456.78",
    "1234567.8", "0.001", "abc", "", "1,5", "1 000", "١", "true", "False", "YES", "no", "0x1F",
    "2025-03-02", "2025-3-2", "2025-02-30", "2024-02-29", "2025-13-01", "25-03-02", "2025-03-02x",
    "0000-01-01", "0001-01-01", "9999-12-31", "2000-02-29", "1900-02-29", " 2025-01-01", "+2025-01-01",
    "20250101", "2025-01-01T00:00",
]  # fmt: skip


@pytest.mark.parametrize(
    ("to", "precision", "scale"),
    [("integer", None, None), ("float", None, None), ("decimal", 8, 2), ("decimal", 5, 0), ("boolean", None, None),
     ("date", None, None)],
)  # fmt: skip
def test_vectorised_conversion_accepts_and_refuses_what_the_row_converter_does(to, precision, scale):
    class Rule:
        pass

    rule = Rule()
    rule.to, rule.precision, rule.scale, rule.format, rule.timezone = to, precision, scale, None, "UTC"
    column = Column("c", to, precision, scale)
    convert = converter(to, precision, scale)
    # All at once, and each on its own: a column whose every text is clean may take a faster path.
    results = [
        (values, convert_column(values, rule, column))
        for values in [
            pa.array(CONVERSION_SAMPLES + [None], pa.string()),
            *(pa.array([t]) for t in CONVERSION_SAMPLES),
        ]
    ]
    checked = [
        (text, got, failed)
        for values, result in results
        for text, got, failed in zip(
            values.to_pylist(), result.values.to_pylist(), result.failed.to_pylist(), strict=True
        )
    ]
    for text, got, failed in checked:
        if text is None:
            assert (got, failed) == (None, False)
            continue
        try:
            expected = convert(text)
        except ConversionFailed:
            assert (got, failed) == (None, True), text
            continue
        assert (got, failed) == (expected, False), text


# ---- expressions: the vectorised form agrees with the row form -----------------------------------


EXPRESSIONS = [
    "q > 2", "q >= p", "p < 10.5", "f > q and s is not null", "s == 'b' or q is null", "not (q > 1)",
    "q / 0 is null", "q / 2 > 1", "p / 2 > 1", "q * 3 - 1 >= 5", "p * 2 > 10", "-q < -1", "f + p > 3",
    "s in ('a', 'c')", "s not in ('a', null)", "q in (1, 2)", "q in (1, 2.5)", "s contains 'b'",
    "s starts_with 'a'", "s ends_with 'c'", "coalesce(q, 0) == 0", "coalesce(q, f) > 1", "lower(s) == 'a'",
    "upper(s) == 'B'", "trim(s) == 'c'", "concat(s, q) == 'a1'", "concat(s, f) == 'a1.5'",
    "round(p, 0) == 2", "round(f) == 2", "d > date '2025-03-01'", "b == true", "b != false or q > 1",
    "null is null", "q == null", "(q > 1) == true",
]  # fmt: skip


def test_vectorised_expressions_give_the_row_results():
    schema = {
        "q": Column("q", "integer"),
        "p": Column("p", "decimal", 8, 2),
        "f": Column("f", "float"),
        "s": Column("s", "string"),
        "d": Column("d", "date"),
        "b": Column("b", "boolean"),
    }
    rng = random.Random(3)
    from datetime import date

    def maybe(value):
        return None if rng.random() < 0.2 else value

    rows = [
        [
            maybe(rng.randint(-3, 5)),
            maybe(Decimal(rng.randint(-300, 900)) / 100),
            maybe(rng.choice([0.0, 1.5, 2.5, -1.25, 3.0])),
            maybe(rng.choice(["a", "b", " c ", "abc", "B"])),
            maybe(date(2025, 3, rng.randint(1, 3))),
            maybe(rng.random() < 0.5),
        ]
        for _ in range(400)
    ]
    columns = list(zip(*rows, strict=True))
    types = [pa.int64(), pa.decimal128(8, 2), pa.float64(), pa.string(), pa.date32(), pa.bool_()]
    batch = pa.RecordBatch.from_arrays(
        [pa.array(list(c), t) for c, t in zip(columns, types, strict=True)], names=list(schema)
    )
    for text in EXPRESSIONS:
        by_row = compile_condition(text, schema)
        expected = [by_row(row) for row in rows]
        assert compile_vector_condition(text, schema)(batch).to_pylist() == expected, text


# ---- staging and ports ------------------------------------------------------------------------------


def filter_job(**settings) -> dict:
    return job(
        "staged",
        csv_reader("in.csv", ["id", "name"], ["keep"]),
        {"id": "keep", "type": "filter", "config": {"condition": "name != 'x'"}, "routes": {"pass": ["out"]}},
        csv_writer("out", "out.csv"),
        **settings,
    )


def write_rows(tmp_path: Path, count: int) -> None:
    (tmp_path / "data").mkdir(exist_ok=True)
    lines = "".join(f"{i},n{i}\n" for i in range(count))
    (tmp_path / "data" / "in.csv").write_text("id,name\n" + lines)


def test_outputs_are_zstd_parquet_parts_listed_by_a_manifest(tmp_path):
    write_rows(tmp_path, 25)
    run(tmp_path, filter_job(chunk_size=10))
    port = tmp_path / "staging" / "keep" / "pass"
    manifest = json.loads((port / MANIFEST_FILE).read_text())
    assert manifest["rows"] == 25 and manifest["chunks"] == 3
    assert manifest["fingerprint"] == "id:string,name:string"
    assert sorted(p.name for p in port.iterdir()) == [MANIFEST_FILE, *manifest["parts"]]
    metadata = pq.ParquetFile(port / manifest["parts"][0]).metadata
    assert metadata.num_rows == 25 and metadata.num_row_groups == 3
    assert metadata.row_group(0).column(0).compression == "ZSTD"


def test_a_part_holds_at_most_a_million_rows(tmp_path, monkeypatch):
    from etlkit.jobs import staging

    monkeypatch.setattr(staging, "PART_ROWS", 4)
    schema = (Column("id", "integer"),)
    writer = PortWriter(tmp_path / "port", schema, "c", "out")
    for start in (0, 3, 6):
        writer.write(pa.record_batch([pa.array(range(start, start + 3), pa.int64())], names=["id"]))
    writer.commit()
    manifest = json.loads((tmp_path / "port" / MANIFEST_FILE).read_text())
    assert manifest["parts"] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [pq.ParquetFile(tmp_path / "port" / p).metadata.num_rows for p in manifest["parts"]] == [4, 4, 1]
    batches = list(read_port(tmp_path / "port", schema, 2))
    # Row groups of 3, 1 | 2, 2 | 1 rows (the batches as written, cut at the parts), each cut to 2.
    assert [b.num_rows for b in batches] == [2, 1, 1, 2, 2, 1]
    assert [v for b in batches for v in b.column(0).to_pylist()] == list(range(9))


def test_a_components_chunk_size_rechunks_what_it_reads(tmp_path):
    write_rows(tmp_path, 20)
    spec = filter_job(chunk_size=10)
    spec["components"][1]["chunk_size"] = 3
    run(tmp_path, spec)
    manifest = json.loads((tmp_path / "staging" / "keep" / "pass" / MANIFEST_FILE).read_text())
    # The reader staged two batches of 10; the filter, with chunk_size 3, read and wrote 4 of each: a
    # read batch never spans two staged ones (joining them would copy, and hold both).
    assert manifest["chunks"] == 8
    schema = (Column("id"), Column("name"))
    sizes = [b.num_rows for b in read_port(tmp_path / "staging" / "read" / "out", schema, 3)]
    assert sizes == [3, 3, 3, 1, 3, 3, 3, 1]


def test_a_batch_that_does_not_match_its_port_names_component_port_and_column(tmp_path, monkeypatch):
    write_rows(tmp_path, 3)

    def wrong_filter(run):
        for batch in run.read():
            ids = pa.array(range(batch.num_rows), pa.int64())
            run.emit("pass", pa.record_batch([ids, batch.column(1)], names=["id", "name"]))

    monkeypatch.setitem(component_module.RUNNERS, "filter", wrong_filter)
    with pytest.raises(
        BadInputError, match=r"keep: batch written to port 'pass' .*column 'id' is int64, expected string"
    ):
        run(tmp_path, filter_job())
    assert not (tmp_path / "staging" / "keep" / "pass" / MANIFEST_FILE).exists()

    def unrouted_wrong(run):
        for batch in run.read():
            run.emit("pass", batch)
            run.emit("fail", batch.select([1, 0]))

    monkeypatch.setitem(component_module.RUNNERS, "filter", unrouted_wrong)
    with pytest.raises(
        BadInputError, match=r"keep: batch written to port 'fail' .*column 1 is 'name', expected 'id'"
    ):
        run(tmp_path, filter_job())


def test_a_changed_job_file_is_refused_downstream_by_the_fingerprint(tmp_path):
    write_rows(tmp_path, 3)
    spec = filter_job()
    validated = validate_job_text(json.dumps(spec), tmp_path / "staged.json")
    io_ = make_io(tmp_path)
    from etlkit.jobs.metrics import ComponentMetrics
    from etlkit.jobs.runtime import run_component

    run_component(validated, "read", io_, ComponentMetrics("read", "read_csv"))
    spec["components"][0]["config"]["columns"].append({"name": "extra"})
    (tmp_path / "data" / "in.csv").write_text("id,name,extra\n1,a,b\n")
    changed = validate_job_text(json.dumps(spec), tmp_path / "staged.json")
    with pytest.raises(BadInputError, match="the job file changed during the run"):
        run_component(changed, "keep", io_, ComponentMetrics("keep", "filter"))


# ---- CSV text ----------------------------------------------------------------------------------------


def test_csv_text_quotes_like_the_csv_module_and_copy_text_keeps_empty_strings_apart_from_nulls():
    values = ["a", "b,c", 'q"x', "", "line\nbreak", " sp", None, "tab\there", "semi;colon"]
    numbers = [1, 2, None, 4, 5, 6, 7, 8, 9]
    batch = pa.record_batch([pa.array(values), pa.array(numbers, pa.int64())], names=["s", "n"])
    for delimiter in (",", ";", "\t"):
        expected = io.StringIO()
        csv.writer(expected, delimiter=delimiter, lineterminator="\n").writerows(
            [["" if v is None else v, "" if n is None else n] for v, n in zip(values, numbers, strict=True)]
        )
        assert bytes(csv_bytes(batch, delimiter)).decode() == expected.getvalue()
    copy_text = bytes(csv_bytes(batch, for_copy=True)).decode().splitlines()
    assert copy_text[3] == '"",4' and copy_text[7] == ",7"


def test_run_job_on_the_arrow_engine_keeps_row_counts_over_many_batches(tmp_path):
    write_rows(tmp_path, 1000)
    results, data = run(tmp_path, filter_job(chunk_size=64))
    assert len((data / "out.csv").read_text().splitlines()) == 1001
    assert results["keep"].rows_in == {"in": 1000} and results["keep"].rows_out == {"pass": 1000}
    assert run_job  # the in-process runner the benchmark uses


def test_join_and_aggregation_on_arrow_give_the_rows_python_gives(tmp_path):
    rng = random.Random(5)
    data = tmp_path / "data"
    data.mkdir()
    orders = [(i, rng.choice(["C1", "C2", "C3", "C9", ""]), rng.randint(-5, 40)) for i in range(3000)]
    (data / "orders.csv").write_text("id,customer,qty\n" + "".join(f"{i},{c},{q}\n" for i, c, q in orders))
    (data / "customers.csv").write_text("customer,region\nC1,north\nC2,south\nC3,\nC4,east\n")
    spec = job(
        "join_agg",
        {
            "id": "orders",
            "type": "read_csv",
            "config": {
                "path": "orders.csv",
                "columns": [{"name": "id"}, {"name": "customer"}, {"name": "qty"}],
            },
            "routes": {"out": ["typed"]},
        },
        {
            "id": "typed",
            "type": "type_conversion",
            "config": {"rules": [{"column": "id", "to": "integer"}, {"column": "qty", "to": "integer"}]},
            "routes": {"out": ["joined.left"]},
        },
        {
            "id": "customers",
            "type": "read_csv",
            "config": {"path": "customers.csv", "columns": [{"name": "customer"}, {"name": "region"}]},
            "routes": {"out": ["joined.right"]},
        },
        {
            "id": "joined",
            "type": "schema_mapping",
            "config": {
                "join": {"how": "full", "left_on": ["customer"], "right_on": ["customer"]},
                "columns": [
                    {"name": "id", "from": "left.id"},
                    {"name": "region", "expr": "coalesce(right.region, 'none')"},
                    {"name": "qty", "from": "left.qty"},
                ],
            },
            "routes": {"out": ["rows", "totals"]},
        },
        {
            "id": "totals",
            "type": "aggregation",
            "config": {
                "group_by": ["region"],
                "aggregates": [
                    {"name": "n", "function": "count"},
                    {"name": "qty", "function": "sum", "column": "qty"},
                    {"name": "low", "function": "min", "column": "qty"},
                    {"name": "high", "function": "max", "column": "qty"},
                    {"name": "mean", "function": "avg", "column": "qty"},
                ],
            },
            "routes": {"out": ["out"]},
        },
        csv_writer("rows", "rows.csv"),
        csv_writer("out", "out.csv"),
        chunk_size=700,
    )
    run(tmp_path, spec)
    regions = {"C1": "north", "C2": "south"}
    expected_rows = [(i, regions.get(c, "none"), q) for i, c, q in orders] + [(None, "east", None)]
    got_rows = list(csv.reader((data / "rows.csv").read_text().splitlines()[1:]))
    assert got_rows == [["" if v is None else str(v) for v in row] for row in expected_rows]
    totals = {}
    for _, region, qty in expected_rows:
        totals.setdefault(region, []).append(qty)
    lines = (data / "out.csv").read_text().splitlines()
    assert lines[0] == "region,n,qty,low,high,mean"
    expected = []
    for region in sorted(totals):
        values = [q for q in totals[region] if q is not None]
        mean = sum(values) / len(values) if values else None
        row = [region, len(totals[region]), sum(values) if values else None, min(values, default=None)]
        row += [max(values, default=None), mean]
        expected.append(",".join("" if v is None else str(v) for v in row))
    assert lines[1:] == expected


def test_a_job_stages_through_an_object_storage_path(tmp_path):
    from etlkit.jobs.staging import run_directory, staging_path

    write_rows(tmp_path, 30)
    spec = filter_job(chunk_size=7)
    validated = validate_job_text(json.dumps(spec), tmp_path / "staged.json")
    run_dir = run_directory(f"file://{tmp_path}/objects", "staged", "manual__2025-03-02T00:00:00+00:00")
    assert type(run_dir).__name__ == "ObjectStoragePath" and str(run_dir).startswith("file://")
    assert staging_path(str(run_dir)) == run_dir
    io_ = make_io(tmp_path)
    io_.run_dir = run_dir
    results = run_job(validated, io_)
    assert results["keep"].rows_out == {"pass": 30}
    assert len((tmp_path / "data" / "out.csv").read_text().splitlines()) == 31
    port = Path(str(run_dir).removeprefix("file://")) / "keep" / "pass"
    assert json.loads((port / MANIFEST_FILE).read_text())["rows"] == 30


def test_text_that_is_not_utf8_fails_without_retries_naming_the_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.csv").write_bytes(b"id,name\n1,caf\xe9\n")
    spec = job("latin1", csv_reader("in.csv", ["id", "name"], ["out"]), csv_writer("out", "out.csv"))
    with pytest.raises(BadInputError, match=r"in\.csv: unreadable CSV: .*UTF8"):
        run(tmp_path, spec)


def test_line_guard_takes_out_exactly_the_blank_and_unbalanced_quote_lines():
    """Against the definition applied line by line, on random lines: ``_clean`` finds them with
    substring searches, not a per-line reading."""
    rng = random.Random(5)
    pieces = ["", "\r", "a,b", '"q",r', 'x"y', '""', 'a,"b\r', ",", " "]
    lines = [rng.choice(pieces) for _ in range(3000)]
    block = "".join(f"{line}\n" for line in lines).encode()
    guard = LineGuard(source=None)
    cleaned = guard._clean(block)
    expected = [
        (
            number,
            "blank line" if line in ("", "\r") else "unbalanced quote (a quoted value may not span lines)",
        )
        for number, line in enumerate(lines, start=1)
        if line in ("", "\r") or line.count('"') % 2
    ]
    assert [(bad.line, bad.reason) for bad in guard.bad] == expected
    kept = [line for line in lines if line not in ("", "\r") and not line.count('"') % 2]
    assert cleaned.decode() == "".join(f"{line}\n" for line in kept)


@pytest.mark.parametrize("how", ["inner", "left", "right", "full"])
def test_a_join_on_a_unique_right_key_gives_what_the_hash_join_gives(tmp_path, monkeypatch, how):
    """Unique right keys take the lookup path (one hash table for the whole run); its output, rows
    and order, must be the hash join's. Null keys on both sides, repeated and unmatched left keys."""
    rng = random.Random(how)
    data = tmp_path / "data"
    data.mkdir()
    keys = [f"k{n}" for n in range(40)]
    left = [f"{n},{rng.choice([*keys, 'missing', ''])}" for n in range(500)]
    right = [f"{key},{rng.randint(0, 9)}" for key in rng.sample(keys, 30)] + [",7"]
    (data / "left.csv").write_text("id,k\n" + "\n".join(left) + "\n")
    (data / "right.csv").write_text("k,v\n" + "\n".join(right) + "\n")
    left_reader = {**csv_reader("left.csv", ["id", "k"], ["pair.left"], null_values=[""]), "id": "l"}
    right_reader = {**csv_reader("right.csv", ["k", "v"], ["pair.right"], null_values=[""]), "id": "r"}
    columns = [
        {"name": n, "from": f"{side}.{c}"}
        for n, side, c in (
            ("lid", "left", "id"),
            ("lk", "left", "k"),
            ("rk", "right", "k"),
            ("rv", "right", "v"),
        )
    ]
    pair = {
        "id": "pair",
        "type": "schema_mapping",
        "config": {"join": {"how": how, "left_on": ["k"], "right_on": ["k"]}, "columns": columns},
        "routes": {"out": ["out"]},
    }
    spec = job("pairs", left_reader, right_reader, pair, csv_writer("out", "out.csv"), chunk_size=64)
    lookups = []
    original = component_module._unique_key_lookup
    monkeypatch.setattr(
        component_module, "_unique_key_lookup", lambda *a: lookups.append(original(*a)) or lookups[-1]
    )
    run(tmp_path, spec)
    by_lookup = (data / "out.csv").read_text()
    assert lookups and lookups[0] is not None
    monkeypatch.setattr(component_module, "_unique_key_lookup", lambda *a: None)
    run(tmp_path, spec)
    assert by_lookup == (data / "out.csv").read_text()
    assert len(by_lookup.splitlines()) > 100
