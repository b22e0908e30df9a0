"""The fused engine: a whole job in one process, components in threads, queued edges.

Its results equal the per-component engine's on every test in test_runtime.py (each runs both ways);
these tests cover what is fused-only: a failure anywhere stops every thread and commits nothing,
and a graph whose reader drains routes one after the other cannot deadlock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import psycopg
import pytest

from etlkit.common.errors import BadInputError
from etlkit.jobs import components as component_module
from etlkit.jobs import fused
from etlkit.jobs.validation import validate_job_text
from tests.conftest import REPO_ROOT
from tests.jobs.test_runtime import csv_reader, job, make_io, orders, sql_job, write_orders

pytestmark = pytest.mark.jobs


def execute(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(statement)


def run_fused(tmp_path, spec, dsn=None):
    validated = validate_job_text(json.dumps(spec), tmp_path / f"{spec['name']}.json")
    return fused.run_fused(validated, make_io(tmp_path, dsn))


def test_a_failing_middle_component_stops_every_thread_and_the_load_commits_nothing(
    tmp_path, jobs_dsn, monkeypatch
):
    write_orders(tmp_path, *(f"{n},s{n}" for n in range(1, 41)))  # 20 batches of 2
    convert = component_module.RUNNERS["type_conversion"]

    def failing_after_three_batches(run):
        emitted = []
        real_emit = run.emit

        def emit(port, batch):
            if len(emitted) == 3:
                raise BadInputError("conv: injected failure")
            emitted.append(batch)
            real_emit(port, batch)

        run.emit = emit
        convert(run)

    monkeypatch.setitem(component_module.RUNNERS, "type_conversion", failing_after_three_batches)
    with pytest.raises(BadInputError, match="injected failure"):
        run_fused(tmp_path, sql_job("upsert", key_columns=["order_id"]), jobs_dsn)
    assert orders(jobs_dsn) == []
    assert not [t.name for t in threading.enumerate() if t.name.startswith("etlkit-")], (
        "a component thread lives on"
    )
    monkeypatch.setitem(component_module.RUNNERS, "type_conversion", convert)
    results = run_fused(tmp_path, sql_job("upsert", key_columns=["order_id"]), jobs_dsn)
    assert len(orders(jobs_dsn)) == 40
    assert {c: m.status for c, m in results.items()} == dict.fromkeys(("read", "conv", "load"), "success")


def test_a_failing_sink_releases_producers_blocked_on_full_queues(tmp_path, jobs_dsn):
    write_orders(tmp_path, *(f"{n},s{n}" for n in range(1, 201)))
    execute(jobs_dsn, "ALTER TABLE sales.orders ADD CONSTRAINT small_ids CHECK (order_id < 150)")
    try:
        with pytest.raises(psycopg.errors.CheckViolation, match="small_ids"):
            run_fused(tmp_path, sql_job("append"), jobs_dsn)
    finally:
        execute(jobs_dsn, "ALTER TABLE sales.orders DROP CONSTRAINT small_ids")
    assert orders(jobs_dsn) == []


def test_a_reader_of_two_routes_from_one_producer_does_not_deadlock(tmp_path):
    """split sends to both sides of a join; the join reads its right side first, in full. Queued,
    split would block on a full left queue for ever; the join's routes come through staging."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.csv").write_text("k,v\n" + "".join(f"{n},{n % 2}\n" for n in range(300)))
    spec = job(
        "split_join",
        csv_reader("in.csv", ["k", "v"], ["split"]),
        {
            "id": "split",
            "type": "split",
            "config": {"branches": [{"port": "even", "when": "v == '0'"}]},
            "routes": {"even": ["pair.left"], "default": ["pair.right"]},
        },
        {
            "id": "pair",
            "type": "schema_mapping",
            "config": {
                "join": {"how": "full", "left_on": ["k"], "right_on": ["k"]},
                "columns": [{"name": "left_k", "from": "left.k"}, {"name": "right_k", "from": "right.k"}],
            },
            "routes": {"out": ["out"]},
        },
        {"id": "out", "type": "write_csv", "config": {"path": "out.csv"}},
        chunk_size=10,
    )
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(results=run_fused(tmp_path, spec)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the fused run deadlocked"
    assert outcome["results"]["pair"].rows_out == {"out": 300}
    lines = (tmp_path / "data" / "out.csv").read_text().splitlines()
    assert len(lines) == 301  # header + 150 left-only + 150 right-only rows


def test_the_metrics_of_a_failed_run_say_which_component_failed_and_which_were_stopped(
    tmp_path, jobs_dsn, monkeypatch
):
    write_orders(tmp_path, *(f"{n},s{n}" for n in range(1, 41)))
    validated = validate_job_text(json.dumps(sql_job("append")), tmp_path / "sql_append.json")

    def failing(run):
        raise BadInputError("conv: injected failure")

    monkeypatch.setitem(component_module.RUNNERS, "type_conversion", failing)
    job_run = fused.FusedJob(validated, make_io(tmp_path, jobs_dsn), try_number=3)
    with pytest.raises(BadInputError):
        job_run.run()
    statuses = {c: (m.status, m.try_number) for c, m in job_run.metrics.items()}
    assert statuses == {"read": ("stopped", 3), "conv": ("failed", 3), "load": ("stopped", 3)}
    assert "injected failure" in job_run.metrics["conv"].error


PARQUET_LOADED = """
import sys
from pathlib import Path
from etlkit.jobs.environment import rooted_path
from etlkit.jobs.fused import run_fused
from etlkit.jobs.runtime import RuntimeIO
from etlkit.jobs.validation import load_job
root = Path(sys.argv[2])
run_fused(load_job(sys.argv[1]), RuntimeIO(root / "staging", lambda path, conn: rooted_path(path, root / "data"), None))
print("pyarrow.parquet" in sys.modules)
"""


@pytest.mark.parametrize(("staged", "loaded"), [(False, "False"), (True, "True")])
def test_parquet_is_loaded_only_by_a_fused_run_that_stages(tmp_path, staged, loaded):
    """Parquet costs a process ~10 MiB: a fused chain of queued edges does without it."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.csv").write_text("k,v\n" + "".join(f"{n},{n % 2}\n" for n in range(50)))
    writer = {"id": "out", "type": "write_csv", "config": {"path": "out.csv"}}
    if staged:  # a merge reads its routes from staging
        readers = [{**csv_reader("in.csv", ["k", "v"], ["both"]), "id": f"read_{n}"} for n in (1, 2)]
        components = [*readers, {"id": "both", "type": "merge", "config": {}, "routes": {"out": ["out"]}}]
    else:
        components = [csv_reader("in.csv", ["k", "v"], ["out"])]
    spec = job("chain", *components, writer, execution="fused")
    job_file = tmp_path / "chain.json"
    job_file.write_text(json.dumps(spec))
    child = subprocess.run(
        [sys.executable, "-c", PARQUET_LOADED, str(job_file), str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "plugins")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.strip() == loaded
    assert len((tmp_path / "data" / "out.csv").read_text().splitlines()) == 1 + (100 if staged else 50)
