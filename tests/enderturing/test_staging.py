"""Staged sessions are personal data: they live in a worker-local directory of one task try and are
gone when the task ends, and a load reads only its own try's files (spec §5, issue 13/14)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from etlkit.common.errors import InjectedFault, TransientError
from etlkit.enderturing import load, staging
from tests.conftest import REPO_ROOT, task_states
from tests.enderturing.conftest import LOGICAL_DATE, SCHEMA, WATERMARK_KEY, watermark_value
from tests.enderturing.test_dag_end_to_end import DAG_ID, expected_counts, snapshot, table_counts

pytestmark = pytest.mark.enderturing
SHORT_RESYNC = {"resync_lookback_days": 1}


@pytest.fixture
def temp_root(tmp_path, monkeypatch) -> Path:
    """The worker's temp root for this test (what TMPDIR gives a worker)."""
    root = tmp_path / "worker-tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def staging_dirs(root: Path) -> list[Path]:
    return sorted(root.glob(f"{staging.TEMP_PREFIX}*"))


def watch_loads(monkeypatch, fail_first: BaseException | None = None) -> list[dict]:
    """Record, at every session load, the staging directories that exist and their files; with
    ``fail_first``, the first session load raises it after the stage of sessions_tags."""
    seen: list[dict] = []
    real_load_tables, real_upsert = load.load_tables, load._upsert

    def load_tables(conn, schema, tables, spools, lock_key, **options):
        if lock_key == load.SESSIONS_LOCK_KEY:
            root = Path(tempfile.gettempdir())
            seen.append({d: sorted(p.name for p in d.iterdir()) for d in staging_dirs(root)})
        return real_load_tables(conn, schema, tables, spools, lock_key, **options)

    def upsert(conn, table, *args):
        if fail_first is not None and table.name == "sessions_tags" and len(seen) == 1:
            raise fail_first
        return real_upsert(conn, table, *args)

    monkeypatch.setattr(load, "load_tables", load_tables)
    monkeypatch.setattr(load, "_upsert", upsert)
    return seen


def test_the_dag_runs_the_documented_tasks_in_the_documented_order(dag_bag):
    dag = dag_bag.get_dag(DAG_ID)
    doc = (REPO_ROOT / "docs" / "enderturing.md").read_text()
    section = doc.split("## How it runs", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", section, re.M)
    assert documented == [
        "settle",
        "ensure_schema",
        "refresh_dictionaries",
        "sync_sessions",
        "advance_category_watermark",
    ]
    assert sorted(dag.task_ids) == sorted(documented)
    for position, task_id in enumerate(documented[1:], start=1):
        upstream = dag.get_task(task_id).upstream_task_ids
        assert documented[position - 1] in upstream and upstream <= set(documented[:position]), task_id


def test_a_successful_run_leaves_no_staging_behind(run_dag, et_airflow, warehouse, temp_root, monkeypatch):
    seen = watch_loads(monkeypatch)

    dr = run_dag(DAG_ID, conf=SHORT_RESYNC, logical_date=LOGICAL_DATE)

    assert dr.state == "success", task_states(dr)
    [at_load] = seen
    [(directory, files)] = at_load.items()  # the load saw exactly one staging directory: its own
    assert {"sessions.ndjson", "details.ndjson", "windows", "spool"} <= set(files)
    assert staging_dirs(temp_root) == [] and not directory.exists()


def test_a_failed_load_leaves_no_staging_behind(run_dag, et_airflow, warehouse, temp_root, monkeypatch):
    seen = watch_loads(monkeypatch, fail_first=InjectedFault("crash injected while loading sessions_tags"))

    dr = run_dag(DAG_ID, conf=SHORT_RESYNC, logical_date=LOGICAL_DATE)

    assert dr.state == "failed"
    assert task_states(dr)["sync_sessions"] == "failed"
    assert len(seen) == 1 and len(seen[0]) == 1  # the staging existed while the load ran
    assert staging_dirs(temp_root) == []
    assert warehouse.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0
    assert watermark_value() is None


def test_a_retry_after_a_failed_load_stages_afresh_and_gives_one_clean_runs_state(
    run_dag, et_airflow, warehouse, temp_root, monkeypatch, airflow_var
):
    airflow_var("etl_retry_policy", {"retries": 1, "retry_delay_s": 0})
    seen = watch_loads(monkeypatch, fail_first=TransientError("connection lost in the middle of the load"))

    dr = run_dag(DAG_ID, conf=SHORT_RESYNC, logical_date=LOGICAL_DATE)

    assert dr.state == "success", task_states(dr)
    tries = {ti.task_id: ti.try_number for ti in dr.get_task_instances()}
    assert tries["sync_sessions"] == 2
    first, second = seen
    [first_dir], [second_dir] = first, second
    assert first_dir != second_dir  # each try staged into its own directory ...
    assert not first_dir.exists() and staging_dirs(temp_root) == []  # ... and neither is left
    retried, retried_mark = snapshot(warehouse), watermark_value()
    from airflow.models.variable import Variable

    warehouse.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
    Variable.delete(WATERMARK_KEY)
    clean = run_dag(DAG_ID, conf=SHORT_RESYNC, logical_date=LOGICAL_DATE)  # the fault fired once only
    assert clean.state == "success", task_states(clean)
    assert {ti.task_id: ti.try_number for ti in clean.get_task_instances()}["sync_sessions"] == 1
    assert snapshot(warehouse) == retried and watermark_value() == retried_mark
    assert table_counts(warehouse) == expected_counts(et_airflow.dataset)


def test_a_killed_tries_staging_is_removed_by_the_next_try_on_that_worker(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(finished.stdout)
    killed = tmp_path / f"{staging.TEMP_PREFIX}{dead_pid}-abc123"
    running = tmp_path / f"{staging.TEMP_PREFIX}{os.getpid()}-def456"
    unrelated = tmp_path / "someone-else"
    for directory in (killed, running, unrelated):
        directory.mkdir()
        (directory / "sessions.ndjson").write_text('{"id": "personal data"}\n')

    with staging.task_directory(tmp_path) as own:
        assert own.parent == tmp_path and own.name.startswith(staging.TEMP_PREFIX)
        assert not killed.exists() and running.exists() and unrelated.exists()
    assert not own.exists()


@pytest.mark.parametrize(
    "error",
    [
        "etlkit.common.state:WatermarkRewindError",
        "etlkit.enderturing.load:StagedKeysMissingError",
        "etlkit.enderturing.sync:StagedBatchIncompleteError",
    ],
)
def test_contract_and_watermark_errors_are_never_retried(dag_bag, error):
    import importlib

    from airflow.sdk.definitions.retry_policy import RetryAction

    module, name = error.split(":")
    exception = getattr(importlib.import_module(module), name)("injected")
    for task_id in ("sync_sessions", "advance_category_watermark"):
        task = dag_bag.get_dag(DAG_ID).get_task(task_id)
        assert task.retry_policy.evaluate(exception, 1, task.retries).action == RetryAction.FAIL
