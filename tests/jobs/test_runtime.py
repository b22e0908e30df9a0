"""Components run in-process (no Airflow): rejects with reasons, drift, SQL modes, limits, metrics."""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from etlkit.common.errors import BadInputError
from etlkit.jobs import components as component_module
from etlkit.jobs.columns import Column
from etlkit.jobs.environment import rooted_path
from etlkit.jobs.expressions import ExpressionError, compile_condition
from etlkit.jobs.fused import run_fused
from etlkit.jobs.metrics import ComponentMetrics
from etlkit.jobs.runtime import RuntimeIO, run_component, run_job
from etlkit.jobs.validation import validate_job_text
from tests.jobs.conftest import query

pytestmark = pytest.mark.jobs
ENGINES = {"per_component": run_job, "fused": run_fused}
engine = run_job


@pytest.fixture(autouse=True, params=list(ENGINES))
def each_engine(request, monkeypatch):
    """Every test runs its jobs both ways: a component at a time through staging (as tasks do), and
    fused, all components at once in threads with queued edges."""
    monkeypatch.setitem(globals(), "engine", ENGINES[request.param])
    return request.param


def make_io(tmp_path: Path, dsn: str | None = None) -> RuntimeIO:
    data_root = tmp_path / "data"
    data_root.mkdir(exist_ok=True)

    @contextlib.contextmanager
    def connect(_conn: str):
        with psycopg.connect(dsn, autocommit=True) as connection:
            yield connection

    return RuntimeIO(
        run_dir=tmp_path / "staging",
        resolve_path=lambda path, conn: rooted_path(path, data_root),
        sql_connection=connect,
    )


def job(name: str, *components: dict, **settings) -> dict:
    return {"format_version": 1, "name": name, "components": list(components), **settings}


def run(tmp_path: Path, spec: dict, dsn: str | None = None) -> tuple[dict[str, ComponentMetrics], Path]:
    validated = validate_job_text(json.dumps(spec), tmp_path / f"{spec['name']}.json")
    io = make_io(tmp_path, dsn)
    return engine(validated, io), tmp_path / "data"


def csv_reader(path: str, columns: list[str], targets: list[str], **config) -> dict:
    return {
        "id": "read",
        "type": "read_csv",
        "config": {"path": path, "columns": [{"name": c} for c in columns], **config},
        "routes": {"out": targets},
    }


def csv_writer(cid: str, path: str) -> dict:
    return {"id": cid, "type": "write_csv", "config": {"path": path}}


def assert_invariants(results: dict[str, ComponentMetrics]) -> None:
    for metrics in results.values():
        if metrics.component_type in ("aggregation", "merge", "schema_mapping"):
            continue
        assert sum(metrics.rows_in.values()) == sum(metrics.rows_out.values()) + metrics.rows_dropped, metrics


def test_malformed_csv_lines_are_dropped_as_rejected_and_good_rows_flow(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.csv").write_text("id,name\n1,a\n2,b,EXTRA\n,c\n3\n4,d\n")
    spec = job(
        "bad_lines",
        csv_reader("in.csv", ["id", "name"], ["out"], on_bad_lines="drop"),
        csv_writer("out", "out.csv"),
    )
    spec["components"][0]["config"]["columns"][0]["nullable"] = False
    results, data = run(tmp_path, spec)
    assert (data / "out.csv").read_text() == "id,name\n1,a\n4,d\n"
    read = results["read"]
    assert (read.rows_in, read.rows_out, read.rows_dropped) == ({"source": 5}, {"out": 2}, 3)
    assert dict(read.reject_reasons) == {"malformed_line": 3}
    assert_invariants(results)


def test_malformed_csv_line_fails_by_default_naming_file_and_line(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.csv").write_text("id,name\n1,a\n2,b,EXTRA\n")
    spec = job("bad_fail", csv_reader("in.csv", ["id", "name"], ["out"]), csv_writer("out", "out.csv"))
    with pytest.raises(BadInputError, match=r"in\.csv line 3: malformed line: expected 2 fields, got 3"):
        run(tmp_path, spec)


def test_column_drift_names_the_column_and_the_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.csv").write_text("id,label\n1,a\n")
    spec = job("drift", csv_reader("in.csv", ["id", "name"], ["out"]), csv_writer("out", "out.csv"))
    with pytest.raises(BadInputError, match=r"in\.csv: declared column\(s\) name missing from the header"):
        run(tmp_path, spec)
    (tmp_path / "data" / "in.csv").write_text("id,name,extra\n1,a,x\n")
    with pytest.raises(BadInputError, match=r"undeclared column\(s\) extra \(extra_columns=fail\)"):
        run(tmp_path, spec)
    spec["components"][0]["config"]["extra_columns"] = "ignore"
    run(tmp_path, spec)
    assert (tmp_path / "data" / "out.csv").read_text() == "id,name\n1,a\n"


def test_failed_conversions_go_to_reject_with_reason_and_good_rows_continue(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.csv").write_text(
        "id,amount,day,flag\n1, 2.50 ,2025-03-01,yes\n2,1.999,2025-03-01,no\nx,1,2025-03-01,1\n4,,01/03/2025,0\n"
        "5,1e3,2025-02-30,true\n6,7,2025-03-02,maybe\n"
    )
    spec = job(
        "convert",
        csv_reader("in.csv", ["id", "amount", "day", "flag"], ["conv"]),
        {
            "id": "conv",
            "type": "type_conversion",
            "config": {
                "on_error": "reject",
                "rules": [
                    {"column": "id", "to": "integer"},
                    {"column": "amount", "to": "decimal", "precision": 6, "scale": 2},
                    {"column": "day", "to": "date"},
                    {"column": "flag", "to": "boolean"},
                ],
            },
            "routes": {"out": ["good"], "reject": ["bad"]},
        },
        csv_writer("good", "good.csv"),
        csv_writer("bad", "bad.csv"),
    )
    results, data = run(tmp_path, spec)
    assert (data / "good.csv").read_text() == "id,amount,day,flag\n1,2.50,2025-03-01,true\n"
    assert (data / "bad.csv").read_text().splitlines()[1:] == [
        "2,1.999,2025-03-01,no,conversion_failed:amount",
        "x,1,2025-03-01,1,conversion_failed:id",
        "4,,01/03/2025,0,conversion_failed:day",
        "5,1e3,2025-02-30,true,conversion_failed:amount",
        "6,7,2025-03-02,maybe,conversion_failed:flag",
    ]
    conv = results["conv"]
    assert conv.details == {"conversion_failures": {"amount": 2, "id": 1, "day": 2, "flag": 1}}
    assert conv.rows_rejected == 5 and conv.rows_out == {"out": 1, "reject": 5}
    assert_invariants(results)


def test_unrouted_reject_port_counts_rows_as_dropped_and_rejected(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.csv").write_text("id\n1\nnope\n")
    spec = job(
        "unrouted",
        csv_reader("in.csv", ["id"], ["conv"]),
        {
            "id": "conv",
            "type": "type_conversion",
            "config": {"on_error": "reject", "rules": [{"column": "id", "to": "integer"}]},
            "routes": {"out": ["good"]},
        },
        csv_writer("good", "good.csv"),
    )
    results, _ = run(tmp_path, spec)
    conv = results["conv"]
    assert (conv.rows_out, conv.rows_dropped, dict(conv.reject_reasons)) == (
        {"out": 1},
        1,
        {"conversion_failed:id": 1},
    )


def test_join_aggregation_merge_and_json_round_trip(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "orders.jsonl").write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                {"id": 1, "c": "a", "amount": 10.5},
                {"id": 2, "c": "b", "amount": 1},
                {"id": 3, "c": None, "amount": 2},
                {"id": 4, "c": "z", "amount": 4},
            ]
        )
    )
    (data / "customers.json").write_text(
        json.dumps([{"c": "a", "meta": {"seg": "gold"}}, {"c": "b", "meta": {}}, {"c": "q"}])
    )
    (data / "extra.csv").write_text("id,seg\n9,silver\n")
    spec = job(
        "joined",
        {
            "id": "orders",
            "type": "read_json",
            "config": {
                "path": "orders.jsonl",
                "columns": [
                    {"name": "id", "type": "integer"},
                    {"name": "c"},
                    {"name": "amount", "type": "float"},
                ],
            },
            "routes": {"out": ["enrich.left"]},
        },
        {
            "id": "customers",
            "type": "read_json",
            "config": {
                "path": "customers.json",
                "columns": [{"name": "c"}, {"name": "seg", "source": "meta.seg"}],
            },
            "routes": {"out": ["enrich.right"]},
        },
        {
            "id": "enrich",
            "type": "schema_mapping",
            "config": {
                "join": {"how": "full", "left_on": ["c"], "right_on": ["c"]},
                "columns": [
                    {"name": "id", "from": "left.id"},
                    {"name": "seg", "expr": "coalesce(right.seg, 'none')"},
                    {"name": "amount", "from": "left.amount"},
                ],
            },
            "routes": {"out": ["typed_extra_merge.in"]},
        },
        {
            "id": "extra",
            "type": "read_csv",
            "config": {"path": "extra.csv", "columns": [{"name": "id"}, {"name": "seg"}]},
            "routes": {"out": ["extra_typed"]},
        },
        {
            "id": "extra_typed",
            "type": "type_conversion",
            "config": {"rules": [{"column": "id", "to": "integer"}]},
            "routes": {"out": ["typed_extra_merge"]},
        },
        {
            "id": "typed_extra_merge",
            "type": "merge",
            "config": {"missing_columns": "fill_null"},
            "routes": {"out": ["per_segment", "all_rows"]},
        },
        {
            "id": "per_segment",
            "type": "aggregation",
            "config": {
                "group_by": ["seg"],
                "aggregates": [
                    {"name": "n", "function": "count"},
                    {"name": "total", "function": "sum", "column": "amount"},
                    {"name": "first_id", "function": "min", "column": "id"},
                ],
            },
            "routes": {"out": ["report"]},
        },
        {"id": "report", "type": "write_json", "config": {"path": "report.json", "format": "array"}},
        {"id": "all_rows", "type": "write_json", "config": {"path": "all.jsonl"}},
    )
    results, data = run(tmp_path, spec)
    assert json.loads((data / "report.json").read_text()) == [
        {"seg": "gold", "n": 1, "total": 10.5, "first_id": 1},
        {"seg": "none", "n": 4, "total": 7.0, "first_id": 2},
        {"seg": "silver", "n": 1, "total": None, "first_id": 9},
    ]
    rows = [json.loads(line) for line in (data / "all.jsonl").read_text().splitlines()]
    assert rows == [
        {"id": 1, "seg": "gold", "amount": 10.5},
        {"id": 2, "seg": "none", "amount": 1.0},
        {"id": 3, "seg": "none", "amount": 2.0},
        {"id": 4, "seg": "none", "amount": 4.0},
        {"id": None, "seg": "none", "amount": None},
        {"id": 9, "seg": "silver", "amount": None},
    ]
    merge = results["typed_extra_merge"]
    assert merge.rows_out["out"] == sum(merge.rows_in.values()) == 6


def test_nulls_follow_three_valued_logic():
    schema = {"quantity": Column("quantity", "integer")}
    for condition in ("quantity > 0", "not (quantity > 0)"):
        assert compile_condition(condition, schema)([None]) is False
    assert compile_condition("quantity is null or quantity > 0", schema)([None]) is True


def test_a_very_long_operator_chain_is_an_expression_error_not_a_recursion_error():
    schema = {"x": Column("x", "integer")}
    assert compile_condition(" + ".join(["x"] * 150) + " > 0", schema)([1]) is True
    with pytest.raises(ExpressionError, match="deeper than 200 operations"):
        compile_condition(" + ".join(["x"] * 500) + " > 0", schema)


def test_expressions_never_reach_eval_exec_or_compile(monkeypatch, tmp_path):
    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec/compile must not be used")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, forbidden)
    schema = {"s": Column("s"), "n": Column("n", "decimal", 10, 2)}
    check = compile_condition(
        "lower(trim(s)) starts_with 'a' and round(n * 2, 1) >= 1.5 and s not in ('x')", schema
    )
    assert check(["  Abc", Decimal("0.75")]) is True


def test_rendered_path_may_not_escape_the_data_root(tmp_path):
    with pytest.raises(BadInputError, match="escapes the data root"):
        rooted_path("../etc/passwd", tmp_path)
    with pytest.raises(BadInputError, match="escapes the data root"):
        rooted_path("/etc/passwd", tmp_path)
    assert rooted_path("a/../b.csv", tmp_path) == tmp_path / "b.csv"


def test_summary_is_small_and_holds_no_row_values(tmp_path):
    (tmp_path / "data").mkdir()
    secret_value = "ROW-VALUE-7f3a"
    (tmp_path / "data" / "in.csv").write_text("v\n" + "".join(f"{secret_value}{i}\n" for i in range(500)))
    spec = job(
        "summary",
        csv_reader("in.csv", ["v"], ["conv"]),
        {
            "id": "conv",
            "type": "split",
            "config": {"branches": [{"port": "odd", "when": "v ends_with '1'", "reject_reason": "odd"}]},
            "routes": {"odd": ["out"]},
        },
        csv_writer("out", "out.csv"),
    )
    results, _ = run(tmp_path, spec)
    for metrics in results.values():
        text = json.dumps(metrics.summary())
        assert len(text.encode()) < 8192 and secret_value not in text


# ---- write_sql ----------------------------------------------------------------------------------


def sql_job(mode: str, **config) -> dict:
    return job(
        f"sql_{mode}",
        csv_reader("orders.csv", ["order_id", "status"], ["conv"]),
        {
            "id": "conv",
            "type": "type_conversion",
            "config": {"rules": [{"column": "order_id", "to": "integer"}]},
            "routes": {"out": ["load"]},
        },
        {
            "id": "load",
            "type": "write_sql",
            "config": {"conn": "warehouse", "table": "sales.orders", "mode": mode, **config},
        },
        chunk_size=2,
    )


def write_orders(tmp_path: Path, *lines: str) -> None:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "orders.csv").write_text(
        "order_id,status\n" + "".join(f"{line}\n" for line in lines)
    )


def orders(dsn: str) -> list[tuple]:
    return query(dsn, "SELECT order_id, status FROM sales.orders ORDER BY order_id")


def test_write_sql_modes(tmp_path, jobs_dsn):
    query(jobs_dsn, "INSERT INTO sales.orders (order_id, status) VALUES (1, 'old'), (9, 'keep') RETURNING 1")
    write_orders(tmp_path, "1,new", "2,new", "3,new")
    run(tmp_path, sql_job("upsert", key_columns=["order_id"]), jobs_dsn)
    assert orders(jobs_dsn) == [(1, "new"), (2, "new"), (3, "new"), (9, "keep")]
    write_orders(tmp_path, "4,a", "4,b", "5,c")
    run(tmp_path, sql_job("upsert", key_columns=["order_id"], duplicate_keys="keep_last"), jobs_dsn)
    assert orders(jobs_dsn)[3:5] == [(4, "b"), (5, "c")]
    write_orders(tmp_path, "7,x", "8,y")
    run(tmp_path, sql_job("append"), jobs_dsn)
    assert [r[0] for r in orders(jobs_dsn)] == [1, 2, 3, 4, 5, 7, 8, 9]
    run(tmp_path, sql_job("replace"), jobs_dsn)
    assert orders(jobs_dsn) == [(7, "x"), (8, "y")]


def test_write_sql_permanent_failures(tmp_path, jobs_dsn):
    write_orders(tmp_path, "1,a", "1,b")
    with pytest.raises(BadInputError, match=r"duplicate key \{'order_id': 1\}"):
        run(tmp_path, sql_job("upsert", key_columns=["order_id"]), jobs_dsn)
    with pytest.raises(
        BadInputError, match=r"no primary key or unique constraint .* covers exactly \(status\)"
    ):
        run(tmp_path, sql_job("upsert", key_columns=["status"]), jobs_dsn)
    spec = sql_job("append")
    spec["components"][2]["config"]["table"] = "sales.missing"
    with pytest.raises(BadInputError, match="table sales.missing does not exist"):
        run(tmp_path, spec, jobs_dsn)
    assert orders(jobs_dsn) == []


def row_versions(dsn: str) -> dict[int, str]:
    return dict(query(dsn, "SELECT order_id, xmin::text FROM sales.orders"))


def test_upsert_rewrites_only_the_rows_whose_values_changed(tmp_path, jobs_dsn):
    write_orders(tmp_path, "1,a", "2,b", "3,c")
    run(tmp_path, sql_job("upsert", key_columns=["order_id"]), jobs_dsn)
    first = row_versions(jobs_dsn)
    run(tmp_path, sql_job("upsert", key_columns=["order_id"]), jobs_dsn)
    assert row_versions(jobs_dsn) == first  # same values: no new row version
    write_orders(tmp_path, "1,a", "2,changed", "3,c", "4,d")
    run(tmp_path, sql_job("upsert", key_columns=["order_id"]), jobs_dsn)
    after = row_versions(jobs_dsn)
    assert orders(jobs_dsn) == [(1, "a"), (2, "changed"), (3, "c"), (4, "d")]
    assert {k for k in first if after[k] != first[k]} == {2}


@pytest.mark.parametrize("keep", ["duplicate_keys_fail", "do_nothing"])
def test_upsert_refuses_a_key_given_twice_even_with_identical_rows(tmp_path, jobs_dsn, keep):
    write_orders(tmp_path, "5,x", "1,a", "1,a")
    config = {"key_columns": ["order_id"]}
    if keep == "do_nothing":
        config["update_columns"] = []
    with pytest.raises(BadInputError, match=r"duplicate key \{'order_id': 1\}"):
        run(tmp_path, sql_job("upsert", **config), jobs_dsn)
    assert orders(jobs_dsn) == []


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_write_sql_failure_midway_leaves_no_partial_rows_and_rerun_is_clean(
    tmp_path, jobs_dsn, monkeypatch, mode
):
    write_orders(tmp_path, "1,a", "2,b", "3,c", "4,d", "5,e")
    config = {"key_columns": ["order_id"]} if mode == "upsert" else {}
    real_write_sql = component_module.write_sql

    def crash_after_first_chunk(connection, config, columns, chunks, component_id, **options):
        def failing():
            yield next(chunks)
            raise psycopg.OperationalError("server closed the connection unexpectedly")

        real_write_sql(connection, config, columns, failing(), component_id, **options)

    monkeypatch.setattr(component_module, "write_sql", crash_after_first_chunk)
    with pytest.raises(psycopg.OperationalError):
        run(tmp_path, sql_job(mode, **config), jobs_dsn)
    assert orders(jobs_dsn) == []
    monkeypatch.setattr(component_module, "write_sql", real_write_sql)
    results, _ = run(tmp_path, sql_job(mode, **config), jobs_dsn)
    assert [r[0] for r in orders(jobs_dsn)] == [1, 2, 3, 4, 5]
    assert results["load"].rows_out == {"target": 5}


def test_append_retried_or_cleared_after_its_commit_writes_nothing_twice_and_reports_the_same_counts(
    tmp_path, jobs_dsn, monkeypatch
):
    # No key on the target, as with event tables: nothing but the append log stops a second append.
    with psycopg.connect(jobs_dsn, autocommit=True) as admin:
        admin.execute("DROP TABLE IF EXISTS sales.order_log")
        admin.execute("CREATE TABLE sales.order_log (order_id bigint, status text)")

    def logged() -> list[int]:
        return [r[0] for r in query(jobs_dsn, "SELECT order_id FROM sales.order_log ORDER BY 1")]

    write_orders(tmp_path, "1,a", "2,b", "3,c")
    spec = sql_job("append", table="sales.order_log")
    validated = validate_job_text(json.dumps(spec), tmp_path / "sql_append.json")
    io = make_io(tmp_path, jobs_dsn)
    real_write_sql = component_module.write_sql

    def acknowledgement_lost(*args, **options):
        real_write_sql(*args, **options)
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(component_module, "write_sql", acknowledgement_lost)
    with pytest.raises(psycopg.OperationalError):
        run_job(validated, io)
    assert logged() == [1, 2, 3], "the first try committed"

    monkeypatch.setattr(component_module, "write_sql", real_write_sql)
    retry = ComponentMetrics("load", "write_sql", try_number=2)
    run_component(validated, "load", io, retry)
    assert logged() == [1, 2, 3]
    assert (retry.rows_in, retry.rows_out) == ({"in": 3}, {"target": 3})

    run_component(validated, "conv", io, ComponentMetrics("conv", "type_conversion"))  # upstream cleared
    cleared = ComponentMetrics("load", "write_sql")
    run_component(validated, "load", io, cleared)
    assert logged() == [1, 2, 3], "a cleared upstream does not append the logical run again"
    assert cleared.rows_out == {"target": 3}
    log_rows = "SELECT component_id, rows FROM sales.etlkit_append_log WHERE target_table = 'sales.order_log'"
    assert query(jobs_dsn, log_rows) == [("load", 3)]


def test_append_without_create_rights_on_the_schema_names_the_log_table(tmp_path, jobs_dsn):
    role = "etlkit_append_only"
    with psycopg.connect(jobs_dsn, autocommit=True) as admin:
        admin.execute("DROP TABLE IF EXISTS sales.etlkit_append_log")
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"GRANT USAGE ON SCHEMA sales TO {role}")
        admin.execute(f"GRANT SELECT, INSERT ON sales.orders TO {role}")
    write_orders(tmp_path, "1,a")
    try:
        with pytest.raises(
            BadInputError, match=r"sales\.etlkit_append_log .* include/sql/jobs/append_log\.sql"
        ):
            run(tmp_path, sql_job("append"), f"{jobs_dsn} user={role}")
        assert orders(jobs_dsn) == []
    finally:
        with psycopg.connect(jobs_dsn, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def test_housekeeping_removes_only_stale_staged_runs(tmp_path):
    import os

    from etlkit.common.staging import remove_stale_runs

    old, fresh = tmp_path / "job_a" / "run_old", tmp_path / "job_a" / "run_fresh"
    for run_dir in (old, fresh):
        (run_dir / "read" / "out").mkdir(parents=True)
        (run_dir / "read" / "out" / "data.jsonl").write_text("[]\n")
    now = 1_000_000_000.0
    for path in [old, *old.rglob("*")]:
        os.utime(path, (now - 8 * 86400, now - 8 * 86400))
    for path in [fresh, *fresh.rglob("*")]:
        os.utime(path, (now - 3600, now - 3600))
    assert remove_stale_runs(tmp_path, 7, now) == [old]
    assert not old.exists() and fresh.exists()


def test_large_json_array_is_parsed_incrementally_and_gzip_csv_is_read(tmp_path):
    import gzip

    data = tmp_path / "data"
    data.mkdir()
    records = [{"id": i, "tags": {"name": f"n{i}" * 5}} for i in range(6000)]
    records[4321] = {"id": 1.5, "tags": {"name": "not integral"}}
    (data / "big.json").write_text(json.dumps(records, indent=2))  # ~400 KiB: many 64 KiB reads
    with gzip.open(data / "small.csv.gz", "wt") as handle:
        handle.write("\ufeffid,name\n7,seven\n")
    spec = job(
        "streams",
        {
            "id": "big",
            "type": "read_json",
            "config": {
                "path": "big.json",
                "on_bad_records": "drop",
                "columns": [{"name": "id", "type": "integer"}, {"name": "name", "source": "tags.name"}],
            },
            "routes": {"out": ["both"]},
        },
        {
            "id": "small",
            "type": "read_csv",
            "config": {"path": "small.csv.gz", "columns": [{"name": "id"}, {"name": "name"}]},
            "routes": {"out": ["small_typed"]},
        },
        {
            "id": "small_typed",
            "type": "type_conversion",
            "config": {"rules": [{"column": "id", "to": "integer"}]},
            "routes": {"out": ["both"]},
        },
        {"id": "both", "type": "merge", "config": {}, "routes": {"out": ["out"]}},
        {"id": "out", "type": "write_csv", "config": {"path": "out.csv.gz"}},
        chunk_size=1000,
    )
    results, data = run(tmp_path, spec)
    big = results["big"]
    assert (big.rows_in, big.rows_out, dict(big.reject_reasons)) == (
        {"source": 6000},
        {"out": 5999},
        {"bad_record": 1},
    )
    with gzip.open(data / "out.csv.gz", "rt") as handle:
        lines = handle.read().splitlines()
    assert (
        lines[0] == "id,name"
        and lines[1] == f"0,{'n0' * 5}"
        and lines[-1] == "7,seven"
        and len(lines) == 6001
    )


def test_infinite_floats_are_conversion_failures():
    from etlkit.jobs.conversion import ConversionFailed, to_float

    assert to_float("1e300") == 1e300
    for value in ("1e400", "-1e400", Decimal("1e400"), float("inf"), float("nan"), 10**400):
        with pytest.raises(ConversionFailed):
            to_float(value)


def test_concat_writes_canonical_text_and_mixed_coalesce_gives_its_declared_type():
    from etlkit.jobs.expressions import compile_expression

    schema = {"flag": Column("flag", "boolean"), "n": Column("n", "integer"), "x": Column("x", "float")}
    concat = compile_expression("concat('flag=', flag)", schema)
    assert concat.evaluate([True, None, None]) == "flag=true"
    coalesced = compile_expression("coalesce(n, x)", schema)
    assert coalesced.type == "float"
    value = coalesced.evaluate([None, 3, 2.5])
    assert value == 3.0 and type(value) is float


def test_json_numbers_keep_every_decimal_digit_and_strings_are_not_numbers(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "amounts.jsonl").write_text(
        '{"id": 1, "amount": 123456789012345678901234567890.12, "rate": 0.1}\n'
        '{"id": 2, "amount": "5.00", "rate": 1}\n'
        '{"id": 3, "amount": 1, "rate": "0.5"}\n'
    )
    spec = job(
        "amounts",
        {
            "id": "read",
            "type": "read_json",
            "config": {
                "path": "amounts.jsonl",
                "on_bad_records": "drop",
                "columns": [
                    {"name": "id", "type": "integer"},
                    {"name": "amount", "type": "decimal", "precision": 38, "scale": 2},
                    {"name": "rate", "type": "float"},
                ],
            },
            "routes": {"out": ["total"]},
        },
        {
            "id": "total",
            "type": "aggregation",
            "config": {"aggregates": [{"name": "sum", "function": "sum", "column": "amount"}]},
            "routes": {"out": ["out"]},
        },
        {"id": "out", "type": "write_json", "config": {"path": "total.jsonl"}},
    )
    results, data = run(tmp_path, spec)
    assert (data / "total.jsonl").read_text() == '{"sum":123456789012345678901234567890.12}\n'
    assert results["read"].rows_dropped == 2 and results["read"].reject_reasons == {"bad_record": 2}


def test_decimal_sums_beyond_28_digits_are_exact(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "big.csv").write_text("amount\n" + "99999999999999999999999999999999.99\n" * 3)
    spec = job(
        "big",
        csv_reader("big.csv", ["amount"], ["typed"]),
        {
            "id": "typed",
            "type": "type_conversion",
            "config": {"rules": [{"column": "amount", "to": "decimal", "precision": 38, "scale": 2}]},
            "routes": {"out": ["total"]},
        },
        {
            "id": "total",
            "type": "aggregation",
            "config": {
                "aggregates": [
                    {"name": "sum", "function": "sum", "column": "amount"},
                    {"name": "avg", "function": "avg", "column": "amount"},
                ]
            },
            "routes": {"out": ["out"]},
        },
        csv_writer("out", "total.csv"),
    )
    run(tmp_path, spec)
    assert (data / "total.csv").read_text().splitlines()[1] == (
        "299999999999999999999999999999999.97,99999999999999999999999999999999.99"
    )


def test_read_sql_without_params_keeps_a_literal_percent(tmp_path, jobs_dsn):
    spec = job(
        "percent",
        {
            "id": "read",
            "type": "read_sql",
            "config": {
                "conn": "warehouse",
                "query": "SELECT 'a%' AS pattern WHERE 'abc' LIKE 'a%'",
                "columns": [{"name": "pattern"}],
            },
            "routes": {"out": ["out"]},
        },
        csv_writer("out", "percent.csv"),
    )
    _, data = run(tmp_path, spec, jobs_dsn)
    assert (data / "percent.csv").read_text() == "pattern\na%\n"


def test_upsert_of_new_keys_copies_straight_into_the_table(tmp_path, jobs_dsn, caplog):
    write_orders(tmp_path, "1,a", "2,b", "3,c", "4,d", "5,e")
    with caplog.at_level(logging.INFO, logger="etlkit.jobs.sqlwrite"):
        results, _ = run(tmp_path, sql_job("upsert", key_columns=["order_id"]), jobs_dsn)
    assert orders(jobs_dsn) == [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]
    assert results["load"].rows_out == {"target": 5}
    assert "INSERT … ON CONFLICT" not in caplog.text


@pytest.mark.parametrize("stored", ["5,old", None])
def test_upsert_falls_back_when_a_later_batch_holds_a_stored_or_repeated_key(
    tmp_path, jobs_dsn, caplog, stored
):
    """The first batch's keys are new, so the load starts with a straight COPY; batch three repeats a
    stored key (or one given twice, kept last): that COPY is rolled back and the spilled input upserted."""
    if stored:
        query(
            jobs_dsn, "INSERT INTO sales.orders (order_id, status) VALUES (5, 'old'), (9, 'keep') RETURNING 1"
        )
        lines = ["1,a", "2,b", "3,c", "4,d", "5,e", "6,f"]
        expected = [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e"), (6, "f"), (9, "keep")]
        config = {"key_columns": ["order_id"]}
    else:
        lines = ["1,a", "2,b", "3,c", "4,d", "3,e", "6,f"]
        expected = [(1, "a"), (2, "b"), (3, "e"), (4, "d"), (6, "f")]
        config = {"key_columns": ["order_id"], "duplicate_keys": "keep_last"}
    write_orders(tmp_path, *lines)
    with caplog.at_level(logging.INFO, logger="etlkit.jobs.sqlwrite"):
        results, _ = run(tmp_path, sql_job("upsert", **config), jobs_dsn)
    assert "loading with INSERT … ON CONFLICT" in caplog.text
    assert orders(jobs_dsn) == expected
    assert results["load"].rows_out == {"target": 6}


def test_upsert_refuses_a_null_key_before_writing_anything(tmp_path, jobs_dsn):
    write_orders(tmp_path, "1,a", "2,b", "3,c", ",d")
    with pytest.raises(BadInputError, match=r"load: a row has a null key \(order_id\)"):
        run(tmp_path, sql_job("upsert", key_columns=["order_id"]), jobs_dsn)
    assert orders(jobs_dsn) == []


def read_sql_job(query_text: str, columns: list[dict]) -> dict:
    return job(
        "typed_sql",
        {
            "id": "read",
            "type": "read_sql",
            "config": {"conn": "warehouse", "query": query_text, "columns": columns},
            "routes": {"out": ["out"]},
        },
        {"id": "out", "type": "write_json", "config": {"path": "out.jsonl"}},
        chunk_size=2,
    )


def test_read_sql_keeps_native_values_and_converts_the_others_column_by_column(tmp_path, jobs_dsn):
    rows = """SELECT * FROM (VALUES
        (1, 'a', DATE '2024-01-02', TIMESTAMPTZ '2024-01-02 03:04:05+02', true, 1.5::float8, 2.50::numeric, 7::numeric, 42),
        (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 43),
        (3, 'c', DATE '2024-03-04', TIMESTAMP '2024-03-04 05:06:07', false, 2::float8, 3::numeric, 8::numeric, 44)
    ) AS t(id, name, day, at, flag, score, price, whole, code) ORDER BY id"""
    columns = [
        {"name": "id", "type": "integer", "nullable": False},
        {"name": "name"},
        {"name": "day", "type": "date"},
        {"name": "at", "type": "timestamp"},
        {"name": "flag", "type": "boolean"},
        {"name": "score", "type": "float"},
        {"name": "price", "type": "decimal", "precision": 10, "scale": 2},
        {"name": "whole", "type": "integer"},
        {"name": "code", "type": "string"},
    ]
    _, data = run(tmp_path, read_sql_job(rows, columns), jobs_dsn)
    written = [json.loads(line) for line in (data / "out.jsonl").read_text().splitlines()]
    assert written == [
        {
            "id": 1,
            "name": "a",
            "day": "2024-01-02",
            "at": "2024-01-02T01:04:05+00:00",
            "flag": True,
            "score": 1.5,
            "price": 2.5,
            "whole": 7,
            "code": "42",
        },
        {
            "id": 2,
            "name": None,
            "day": None,
            "at": None,
            "flag": None,
            "score": None,
            "price": None,
            "whole": None,
            "code": "43",
        },
        {
            "id": 3,
            "name": "c",
            "day": "2024-03-04",
            "at": "2024-03-04T05:06:07+00:00",
            "flag": False,
            "score": 2.0,
            "price": 3,
            "whole": 8,
            "code": "44",
        },
    ]


@pytest.mark.parametrize(
    "query_text, columns, message",
    [
        (
            "SELECT NULL::int AS id",
            [{"name": "id", "type": "integer", "nullable": False}],
            "read: null in non-nullable column 'id'",
        ),
        (
            "SELECT 2.5::numeric AS n",
            [{"name": "n", "type": "integer"}],
            "read: column 'n' is not compatible with integer",
        ),
        (
            "SELECT 1.005::numeric AS n",
            [{"name": "n", "type": "decimal", "precision": 10, "scale": 2}],
            "read: column 'n' is not compatible with decimal: .* more than 2 decimal places",
        ),
    ],
)
def test_read_sql_refuses_what_its_columns_do_not_admit(tmp_path, jobs_dsn, query_text, columns, message):
    with pytest.raises(BadInputError, match=message):
        run(tmp_path, read_sql_job(query_text, columns), jobs_dsn)
