"""Per-run environments, early failures and failed-component metrics through dag.test()."""

from __future__ import annotations

import csv
import logging

import psycopg
import pytest

from dev import jobs_data
from tests.conftest import REPO_ROOT, task_states
from tests.jobs.conftest import DAY, component_rows, job_row, query
from tests.jobs.test_examples_e2e import LOGICAL_DATE

pytestmark = pytest.mark.jobs


def test_conf_environment_switches_connections_roots_and_is_recorded(jobs_env, run_dag):
    jobs_data.write_orders_export(jobs_env["data_root"] / "test", DAY)

    dag_run = run_dag("orders_daily_load", conf={"environment": "TEST"}, logical_date=LOGICAL_DATE)

    assert dag_run.state == "success", task_states(dag_run)
    job = job_row(jobs_env["dsn"], "orders_daily_load")
    assert (job["environment"], job["connections"]) == ("TEST", {"warehouse": "jobs_warehouse_test"})
    assert {r["environment"] for r in component_rows(jobs_env["dsn"], "orders_daily_load").values()} == {
        "TEST"
    }
    assert (jobs_env["data_root"] / "test" / "rejects" / "orders_20250302_rejected.csv").is_file()
    assert not (jobs_env["data_root"] / "rejects").exists()


@pytest.mark.parametrize(
    ("conf", "unmap", "message"),
    [
        (
            {"environment": "PROD"},
            False,
            "environment 'PROD' is not configured in Variable 'declarative_jobs'",
        ),
        ({}, True, "environment 'DEV': logical connection name 'warehouse' is not mapped"),
    ],
)
def test_unknown_environment_or_unmapped_name_fails_prepare_before_any_component(
    jobs_env, run_dag, airflow_var, caplog, conf, unmap, message
):
    if unmap:
        settings = jobs_env["settings"]
        settings["environments"]["DEV"]["connections"] = {}
        airflow_var("declarative_jobs", settings)
    jobs_data.write_orders_export(jobs_env["data_root"], DAY)

    with caplog.at_level(logging.ERROR):
        dag_run = run_dag("orders_daily_load", conf=conf, logical_date=LOGICAL_DATE)

    states = task_states(dag_run)
    assert dag_run.state == "failed"
    assert states["_prepare"] == "failed"
    assert {states[c] for c in ("read_orders", "convert", "load_orders")} == {"upstream_failed"}
    assert message in caplog.text
    assert query(jobs_env["dsn"], "SELECT count(*) FROM sales.orders") == [(0,)]
    job = job_row(jobs_env["dsn"], "orders_daily_load")
    assert (job["status"], job["environment"], job["rows_read"]) == (
        "failed",
        conf.get("environment", "DEV"),
        0,
    )
    rows = component_rows(jobs_env["dsn"], "orders_daily_load")
    assert {r["status"] for r in rows.values()} == {"upstream_failed"} and len(rows) == 6


def test_failed_component_is_recorded_and_downstream_marked_upstream_failed(jobs_env, run_dag):
    # The day's export lacks a declared column: the reader fails at once (no retries for bad input).
    export = jobs_data.write_orders_export(jobs_env["data_root"], DAY)
    export.write_text("order_id,customer_id\n1001,C01\n")
    dag_run = run_dag("orders_daily_load", logical_date=LOGICAL_DATE)

    states = task_states(dag_run)
    assert dag_run.state == "failed"
    assert states["read_orders"] == "failed" and states["_finalize"] == "success"
    rows = component_rows(jobs_env["dsn"], "orders_daily_load")
    assert rows["read_orders"]["status"] == "failed" and rows["read_orders"]["try_number"] == 1
    assert (
        "declared column(s) status, quantity, unit_price, order_date missing" in rows["read_orders"]["error"]
        and rows["read_orders"]["duration_s"] is not None
    )
    assert {
        rows[c]["status"] for c in ("drop_cancelled", "convert", "validate", "load_orders", "write_rejects")
    } == {"upstream_failed"}
    assert job_row(jobs_env["dsn"], "orders_daily_load")["status"] == "failed"
    assert any(jobs_env["staging_root"].iterdir()), "a failed run keeps its staging for a resume"


def test_transient_write_failure_retries_only_the_writer_and_loads_once(jobs_env, run_dag, monkeypatch):
    from airflow.ti_deps.deps.not_in_retry_period_dep import NotInRetryPeriodDep

    from etlkit.jobs import components

    # dag.test() honours the job's 120 s retry delay; this test only skips the wait.
    monkeypatch.setattr(NotInRetryPeriodDep, "_get_dep_statuses", lambda *args, **kwargs: iter(()))
    real_write_sql, calls = components.write_sql, []

    def warehouse_down_once(connection, config, columns, chunks, component_id, **options):
        calls.append(component_id)
        if len(calls) == 1:
            next(chunks)
            raise psycopg.OperationalError("connection to server was lost")
        real_write_sql(connection, config, columns, chunks, component_id, **options)

    monkeypatch.setattr(components, "write_sql", warehouse_down_once)
    jobs_data.write_orders_export(jobs_env["data_root"], DAY)

    dag_run = run_dag("orders_daily_load", logical_date=LOGICAL_DATE)

    assert dag_run.state == "success", task_states(dag_run)
    assert query(jobs_env["dsn"], "SELECT order_id FROM sales.orders ORDER BY 1") == [
        (1001,),
        (1003,),
        (1006,),
    ]
    tries = query(
        jobs_env["dsn"],
        "SELECT component_id, try_number, status FROM declarative_component_runs ORDER BY component_id, try_number",
    )
    assert ("load_orders", 1, "failed") in tries and ("load_orders", 2, "success") in tries
    assert {(c, t) for c, t, _ in tries if c != "load_orders"} == {
        (c, 1) for c in ("read_orders", "drop_cancelled", "convert", "validate", "write_rejects")
    }, "upstream components are not re-run"
    assert job_row(jobs_env["dsn"], "orders_daily_load")["status"] == "success"


def test_metrics_database_down_data_still_loads_and_finalize_fails_visibly(
    jobs_env, run_dag, airflow_conn, monkeypatch, caplog
):
    from airflow.ti_deps.deps.not_in_retry_period_dep import NotInRetryPeriodDep

    from dev import pgdb, sshd

    monkeypatch.setattr(NotInRetryPeriodDep, "_get_dep_statuses", lambda *args, **kwargs: iter(()))
    airflow_conn("jobs_metrics", {**pgdb.postgres_connection("postgres"), "port": sshd.free_port()})
    jobs_data.write_orders_export(jobs_env["data_root"], DAY)

    with caplog.at_level(logging.WARNING):
        dag_run = run_dag("orders_daily_load", logical_date=LOGICAL_DATE)

    states = task_states(dag_run)
    assert states["_finalize"] == "failed"
    assert {s for t, s in states.items() if t != "_finalize"} == {"success"}
    assert query(jobs_env["dsn"], "SELECT order_id FROM sales.orders ORDER BY 1") == [
        (1001,),
        (1003,),
        (1006,),
    ]
    assert "could not write component metrics" in caplog.text


def test_deterministic_database_error_fails_the_writer_at_try_one(jobs_env, run_dag, monkeypatch):
    from airflow.ti_deps.deps.not_in_retry_period_dep import NotInRetryPeriodDep

    from etlkit.jobs import components

    # Were the error retried, the wait would be skipped and the second try would load the rows.
    monkeypatch.setattr(NotInRetryPeriodDep, "_get_dep_statuses", lambda *args, **kwargs: iter(()))
    real_write_sql, calls = components.write_sql, []

    def value_does_not_fit_once(connection, config, columns, chunks, component_id, **options):
        calls.append(component_id)
        if len(calls) == 1:
            connection.execute("SELECT 'not a number'::int")  # the server's DataError
        real_write_sql(connection, config, columns, chunks, component_id, **options)

    monkeypatch.setattr(components, "write_sql", value_does_not_fit_once)
    jobs_data.write_orders_export(jobs_env["data_root"], DAY)

    dag_run = run_dag("orders_daily_load", logical_date=LOGICAL_DATE)

    assert task_states(dag_run)["load_orders"] == "failed"
    assert calls == ["load_orders"]
    tries = query(
        jobs_env["dsn"],
        "SELECT try_number, status FROM declarative_component_runs WHERE component_id = 'load_orders'",
    )
    assert tries == [(1, "failed")]
    assert query(jobs_env["dsn"], "SELECT count(*) FROM sales.orders") == [(0,)]


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), False),
        (csv.Error("unexpected end of data"), False),
        (psycopg.errors.UniqueViolation("duplicate key"), False),
        (psycopg.errors.UndefinedTable("relation does not exist"), False),
        (psycopg.errors.LockNotAvailable("lock timeout"), True),
        (psycopg.OperationalError("server closed the connection"), True),
        (OSError("No space left on device"), True),
    ],
)
def test_job_retry_policy_fails_deterministic_errors_and_retries_the_rest(error, retried):
    from airflow.sdk.definitions.retry_policy import RetryAction

    from etlkit.jobs.dag import _default_args
    from etlkit.jobs.validation import load_job

    policy = _default_args(load_job(REPO_ROOT / "dags" / "jobs" / "orders_daily_load.json"))["retry_policy"]
    decision = policy.evaluate(error, try_number=1, max_tries=4)
    assert (decision.action != RetryAction.FAIL) is retried, decision


def test_connection_password_reaches_no_log_xcom_or_metrics_row(
    jobs_env, jobs_db, run_dag, airflow_conn, caplog
):
    from dev import pgdb
    from tests.jobs.test_examples_e2e import assert_small_xcoms_without_row_values

    password = "pw-that-must-not-leak-7f3a"  # trust auth on the test server accepts any password
    for conn_id in ("jobs_warehouse_dev", "jobs_metrics"):
        airflow_conn(conn_id, {**pgdb.postgres_connection(jobs_db), "password": password})
    jobs_data.write_orders_export(jobs_env["data_root"], DAY)

    with caplog.at_level(logging.DEBUG):
        dag_run = run_dag("orders_daily_load", logical_date=LOGICAL_DATE)

    assert dag_run.state == "success", task_states(dag_run)
    assert "jobs_warehouse_dev" in caplog.text, "the resolved connection id is logged"
    assert password not in caplog.text
    assert_small_xcoms_without_row_values(dag_run, forbidden=[password])
    stored = query(
        jobs_env["dsn"],
        "SELECT (SELECT json_agg(j)::text FROM declarative_job_runs j), "
        "(SELECT json_agg(c)::text FROM declarative_component_runs c)",
    )
    assert "jobs_warehouse_dev" in stored[0][0] and password not in str(stored)


def test_append_whose_commit_acknowledgement_was_lost_is_retried_without_duplicates(
    jobs_env, run_dag, monkeypatch
):
    from airflow.ti_deps.deps.not_in_retry_period_dep import NotInRetryPeriodDep

    from etlkit.jobs import components

    monkeypatch.setattr(NotInRetryPeriodDep, "_get_dep_statuses", lambda *args, **kwargs: iter(()))
    real_write_sql, calls = components.write_sql, []

    def committed_then_connection_lost(*args, **options):
        calls.append(args[-1])
        real_write_sql(*args, **options)
        if len(calls) == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(components, "write_sql", committed_then_connection_lost)
    jobs_data.write_events(jobs_env["data_root"], DAY)

    dag_run = run_dag("app_events_ingest", logical_date=LOGICAL_DATE)

    assert dag_run.state == "success", task_states(dag_run)
    assert calls == ["load_events", "load_events"], "the writer was retried"
    assert query(jobs_env["dsn"], "SELECT event_id FROM analytics.payment_events ORDER BY 1") == [(1,), (3,)]
    tries = query(
        jobs_env["dsn"],
        "SELECT try_number, status, rows_out FROM declarative_component_runs "
        "WHERE component_id = 'load_events' ORDER BY try_number",
    )
    assert tries == [(1, "failed", {"target": 2}), (2, "success", {"target": 2})]


def test_a_try_that_ended_without_recording_its_result_is_closed_as_failed_by_finalize(
    jobs_env, run_dag, monkeypatch
):
    """A killed task (SIGKILL, out of memory, lost worker) leaves its 'running' row behind."""
    from etlkit.jobs import components
    from etlkit.jobs.metrics_store import LOST_TRY_ERROR
    from etlkit.operators.jobs import DeclarativeComponentOperator

    real_store = DeclarativeComponentOperator._store

    def killed_before_the_end(run_context, context, summary):
        if summary.component_id == "load_orders" and summary.status != "running":
            return  # the process died before it could write its end
        real_store(run_context, context, summary)

    def crash(*args, **kwargs):
        raise psycopg.errors.DataError("value too long")  # deterministic: no retry

    monkeypatch.setattr(DeclarativeComponentOperator, "_store", staticmethod(killed_before_the_end))
    monkeypatch.setattr(components, "write_sql", crash)
    jobs_data.write_orders_export(jobs_env["data_root"], DAY)

    dag_run = run_dag("orders_daily_load", logical_date=LOGICAL_DATE)

    assert dag_run.state == "failed"
    rows = component_rows(jobs_env["dsn"], "orders_daily_load")
    assert (rows["load_orders"]["status"], rows["load_orders"]["error"]) == ("failed", LOST_TRY_ERROR)
    assert rows["load_orders"]["finished_at"] >= rows["load_orders"]["started_at"]
    assert rows["read_orders"]["status"] == "success"
    assert job_row(jobs_env["dsn"], "orders_daily_load")["status"] == "failed"
