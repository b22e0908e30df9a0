"""What the tasks of a job DAG hand each other: the run context from ``_prepare`` and the component
summaries, typed (RunContext, ComponentSummary) and wired from ``.output`` as templated arguments."""

from __future__ import annotations

import json
import logging

import pytest

from etlkit.jobs.metrics import ComponentMetrics, ComponentSummary

pytestmark = pytest.mark.jobs


def xcom_source(value) -> tuple[str, str]:
    from airflow.sdk.definitions.xcom_arg import PlainXComArg

    assert isinstance(value, PlainXComArg), value
    return value.operator.task_id, value.key


def test_every_task_takes_the_run_context_from_prepare_and_finalize_every_summary(dag_bag):
    dag = dag_bag.get_dag("orders_daily_load")
    components = ["read_orders", "drop_cancelled", "convert", "validate", "load_orders", "write_rejects"]
    for task_id in [*components, "_wait_read_orders", "_finalize"]:
        assert xcom_source(dag.get_task(task_id).run_context) == ("_prepare", "return_value"), task_id
    summaries = dag.get_task("_finalize").summaries
    assert sorted(summaries) == sorted(components)
    assert {c: xcom_source(arg) for c, arg in summaries.items()} == {
        c: (c, "return_value") for c in components
    }
    assert dag.get_task("_finalize").upstream_task_ids == {"_prepare", *components}


def test_a_component_summary_goes_through_xcom_unchanged():
    metrics = ComponentMetrics("convert", "type_conversion", try_number=2)
    metrics.count_in("in", 5)
    metrics.count_out("out", 5)
    metrics.count_detail("conversion_failures", "unit_price")
    metrics.reject("unparseable_value", 2)
    metrics.finish("failed", ValueError("x" * 3000))
    summary = metrics.snapshot()

    value = summary.to_xcom()
    assert json.loads(json.dumps(value)) == value == metrics.summary()
    assert ComponentSummary.from_xcom(value) == summary
    assert (summary.rows_in, summary.rows_out, summary.reject_reasons) == (
        {"in": 5},
        {"out": 5},
        {"unparseable_value": 2},
    )
    assert len(summary.error) == 2000 and summary.duration_s is not None
    with pytest.raises(ValueError, match=r"unknown keys \['rows'\]"):
        ComponentSummary.from_xcom({**value, "rows": []})


def test_finalize_records_a_component_without_a_summary_as_never_run(jobs_env, caplog):
    """A None summary (the task failed or never ran) is not written; the component is marked
    upstream_failed unless a try of it recorded a row itself."""
    import psycopg

    from etlkit.jobs import metrics_store
    from etlkit.jobs.environment import RunContext
    from etlkit.jobs.runs import finalize_run
    from etlkit.jobs.validation import load_job
    from tests.conftest import REPO_ROOT
    from tests.jobs.conftest import component_rows

    validated = load_job(REPO_ROOT / "dags" / "jobs" / "orders_daily_load.json")
    run_context = RunContext(
        environment="DEV",
        connections={"warehouse": "jobs_warehouse_dev"},
        file_roots={},
        data_root="/data",
        staging_root="/staging",
        staging_conn_id=None,
        metrics_conn_id="jobs_metrics",
        job_file_sha256=validated.sha256,
        started_at="2025-03-02T04:30:00+00:00",
    )
    read = ComponentMetrics("read_orders", "read_csv")
    read.count_in("source", 6)
    read.count_out("out", 6)
    read.finish("success")
    summaries = {c: None for c in validated.order} | {"read_orders": read.snapshot()}
    caplog.set_level(logging.INFO, logger="etlkit.metrics")
    with psycopg.connect(jobs_env["dsn"], autocommit=True) as connection:
        metrics_store.ensure_tables(connection)
        row, succeeded = finalize_run(
            connection, validated, "orders_daily_load", "r1", run_context, summaries
        )

    assert not succeeded and (row["status"], row["rows_read"], row["environment"]) == ("failed", 6, "DEV")
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ETL_METRICS ")]
    metrics = json.loads(line.removeprefix("ETL_METRICS "))
    assert (metrics["pipeline"], metrics["rows_read"], metrics["rows_loaded"], metrics["run_id"]) == (
        "jobs",
        6,
        0,
        "r1",
    )
    assert (metrics["extra"]["status"], metrics["extra"]["job_name"]) == ("failed", "orders_daily_load")
    rows = component_rows(jobs_env["dsn"], "orders_daily_load")
    assert rows.pop("read_orders")["status"] == "success"
    assert {r["status"] for r in rows.values()} == {"upstream_failed"} and len(rows) == 5


def test_the_file_root_hook_tests_its_connection(airflow_conn, tmp_path):
    from etlkit.hooks.jobs import JobFilesHook

    airflow_conn("jobs_files_ok", {"conn_type": "fs", "extra": {"path": str(tmp_path)}})
    airflow_conn("jobs_files_gone", {"conn_type": "fs", "extra": {"path": str(tmp_path / "gone")}})
    airflow_conn("jobs_files_no_path", {"conn_type": "fs"})

    assert JobFilesHook("jobs_files_ok").test_connection() == (True, f"root {tmp_path} is a directory")
    assert JobFilesHook("jobs_files_ok").get_conn() == str(tmp_path)
    ok, message = JobFilesHook("jobs_files_gone").test_connection()
    assert not ok and "is not a directory" in message
    ok, message = JobFilesHook("jobs_files_no_path").test_connection()
    assert not ok and "has no 'path'" in message
    ok, message = JobFilesHook("jobs_files_undefined").test_connection()
    assert not ok and "jobs_files_undefined" in message
