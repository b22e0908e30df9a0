"""A job with ``"execution": "fused"`` as Airflow runs it: ``_prepare`` → ``_wait_read_orders`` →
``_run`` → ``_finalize``, with dag.test() against the real PostgreSQL. Same outcome as the
per-component DAG of the same job (test_examples_e2e), one task."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import pytest

from dev import jobs_data
from etlkit.jobs.dag import build_job_dag
from etlkit.jobs.validation import load_job
from tests.conftest import REPO_ROOT, task_states
from tests.jobs.conftest import DAY, component_rows, job_row, query

pytestmark = pytest.mark.jobs

LOGICAL_DATE = datetime(DAY.year, DAY.month, DAY.day, 4, 30, tzinfo=UTC)
NAME = "orders_fused_load"
ORDERS = "SELECT order_id, customer_id, status, quantity, unit_price, order_date FROM sales.orders ORDER BY 1"


@pytest.fixture
def fused_dag(tmp_path, airflow_db, monkeypatch):
    """The orders example with ``execution: fused``, in a DAG bundle of its own beside the repo's:
    dag.test() runs only DAGs it finds in a bundle. Deleted from the metadata DB afterwards."""
    folder = tmp_path / "fused_dags"
    folder.mkdir()
    job = json.loads((REPO_ROOT / "dags" / "jobs" / "orders_daily_load.json").read_text())
    job.pop("$schema")
    job_file = folder / f"{NAME}.json"
    job_file.write_text(json.dumps({**job, "name": NAME, "execution": "fused"}))
    loader = (REPO_ROOT / "dags" / "jobs" / "orders_daily_load.py").read_text()
    (folder / f"{NAME}.py").write_text(loader)
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    bundles = [
        {"name": "dags-folder", "classpath": local, "kwargs": {}},
        {"name": "fused-jobs", "classpath": local, "kwargs": {"path": str(folder)}},
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    yield build_job_dag(load_job(job_file))
    from airflow.api.common.delete_dag import delete_dag
    from airflow.exceptions import DagNotFound

    # The session's metadata DB is shared: later tests (the UI's DAG list) must not see this DAG.
    with contextlib.suppress(DagNotFound):
        delete_dag(NAME)


def test_the_fused_dag_has_one_task_for_every_component(fused_dag):
    assert sorted(fused_dag.task_ids) == ["_finalize", "_prepare", "_run", "_wait_read_orders"]
    run = fused_dag.get_task("_run")
    assert run.upstream_task_ids == {"_prepare", "_wait_read_orders"}
    assert sorted(a.uri for a in run.outlets) == [
        f"x-etlkit://jobs/{NAME}/load_orders",
        f"x-etlkit://jobs/{NAME}/write_rejects",
    ]


def test_a_fused_run_loads_what_the_per_component_run_loads(jobs_env, fused_dag):
    dsn, data_root = jobs_env["dsn"], jobs_env["data_root"]
    jobs_data.write_orders_export(data_root, DAY)
    query(dsn, "INSERT INTO sales.orders VALUES (1001, 'C01', 'new', 2, 19.90, '2025-03-01') RETURNING 1")

    dag_run = fused_dag.test(logical_date=LOGICAL_DATE)

    assert dag_run.state == "success", task_states(dag_run)
    assert query(dsn, ORDERS) == [
        (1001, "C01", "shipped", 2, Decimal("19.90"), date(2025, 3, 1)),
        (1003, "C03", "new", 3, Decimal("7.50"), date(2025, 3, 2)),
        (1006, "C05", "new", 5, Decimal("3.20"), date(2025, 3, 3)),
    ]
    rejects = data_root / "rejects" / "orders_20250302_rejected.csv"
    assert len(rejects.read_text().splitlines()) == 3
    rows = component_rows(dsn, NAME)
    assert {c: (r["rows_in"], r["rows_out"], r["status"]) for c, r in rows.items()} == {
        "read_orders": ({"source": 6}, {"out": 6}, "success"),
        "drop_cancelled": ({"in": 6}, {"pass": 5}, "success"),
        "convert": ({"in": 5}, {"out": 5}, "success"),
        "validate": ({"in": 5}, {"valid": 3, "unparseable": 1, "bad_quantity": 1}, "success"),
        "load_orders": ({"in": 3}, {"target": 3}, "success"),
        "write_rejects": ({"in": 2}, {"target": 2}, "success"),
    }
    job = job_row(dsn, NAME)
    assert (job["status"], job["rows_read"], job["rows_written"], job["rows_rejected"]) == (
        "success",
        6,
        5,
        2,
    )
    assert not any(p for p in jobs_env["staging_root"].rglob("*") if p.is_file()), "staging removed"


def execute(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(statement)


def test_a_failed_fused_run_records_which_component_failed_and_a_rerun_completes(jobs_env, fused_dag):
    """A permanent failure (the target lost a column) fails _run at once, without retries; _finalize
    records the failed component, the others as succeeded or stopped; the rerun loads everything."""
    dsn, data_root = jobs_env["dsn"], jobs_env["data_root"]
    jobs_data.write_orders_export(data_root, DAY)
    execute(dsn, "ALTER TABLE sales.orders RENAME COLUMN status TO state")
    try:
        failed = fused_dag.test(logical_date=LOGICAL_DATE)
    finally:
        execute(dsn, "ALTER TABLE sales.orders RENAME COLUMN state TO status")

    assert failed.state == "failed"
    assert task_states(failed)["_run"] == "failed"
    rows = component_rows(dsn, NAME)
    assert rows["load_orders"]["status"] == "failed"
    assert "has no column(s) status" in rows["load_orders"]["error"]
    assert {r["status"] for c, r in rows.items() if c != "load_orders"} <= {"stopped", "success"}
    assert job_row(dsn, NAME)["status"] == "failed"
    assert query(dsn, "SELECT count(*) FROM sales.orders") == [(0,)]

    rerun = fused_dag.test(logical_date=LOGICAL_DATE)

    assert rerun.state == "success", task_states(rerun)
    assert query(dsn, "SELECT count(*), sum(quantity) FROM sales.orders") == [(3, 10)]
    assert rerun.run_id != failed.run_id  # dag.test() starts a new run of the same date
    component_runs = "SELECT component_id, status FROM declarative_component_runs WHERE run_id = %s"
    assert dict(query(dsn, component_runs, [rerun.run_id])) == dict.fromkeys(rows, "success")
    job_runs = "SELECT status FROM declarative_job_runs WHERE run_id = %s"
    assert query(dsn, job_runs, [rerun.run_id]) == [("success",)]


def test_a_fused_job_refuses_retries_of_one_component(tmp_path):
    from etlkit.jobs.validation import JobDefinitionError, validate_job_text

    job = json.loads((REPO_ROOT / "dags" / "jobs" / "orders_daily_load.json").read_text())
    job["components"][3]["retries"] = 5
    with pytest.raises(JobDefinitionError, match="component 'validate' sets retries.*set the job's retries"):
        validate_job_text(json.dumps({**job, "execution": "fused"}), tmp_path / "orders_daily_load.json")
    assert validate_job_text(json.dumps(job), tmp_path / "orders_daily_load.json").job.execution == "tasks"
