"""write_sql append mode writes each logical run once (spec §11 transient failure, issue 15):
a retry, a cleared upstream, the same date triggered again or backfilled append nothing twice."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import psycopg
import pytest

from dev import jobs_data
from etlkit.jobs.runtime import run_job
from etlkit.jobs.sqlwrite import append_ledger_key, logical_run_key
from etlkit.jobs.validation import validate_job_text
from tests.conftest import task_states
from tests.jobs.conftest import DAY, query
from tests.jobs.test_examples_e2e import LOGICAL_DATE
from tests.jobs.test_runtime import make_io, sql_job, write_orders

pytestmark = pytest.mark.jobs


def test_logical_run_key_is_the_date_or_else_the_run_id():
    assert (
        logical_run_key("job", "manual__x", datetime(2025, 3, 2, tzinfo=UTC))
        == "job|2025-03-02T00:00:00+00:00"
    )
    assert logical_run_key("job", "asset_triggered__y", None) == "job|asset_triggered__y"
    assert append_ledger_key("job|d", "load", "s.t") == "job|d|load|s.t"


def test_append_is_written_once_per_logical_date_across_runs(tmp_path, jobs_dsn):
    """Each run has its own run id and staging; the same logical date writes nothing the second time."""
    with psycopg.connect(jobs_dsn, autocommit=True) as admin:
        admin.execute("DROP TABLE IF EXISTS sales.order_log")
        admin.execute("CREATE TABLE sales.order_log (order_id bigint, status text)")
    write_orders(tmp_path, "1,a", "2,b")
    validated = validate_job_text(
        json.dumps(sql_job("append", table="sales.order_log")), tmp_path / "sql_append.json"
    )
    base = make_io(tmp_path, jobs_dsn)

    def run_as(run_id: str, logical_date: datetime | None) -> int:
        io = dataclasses.replace(
            base,
            run_dir=tmp_path / "staging" / run_id,
            run_key=logical_run_key("sql_append", run_id, logical_date),
        )
        run_job(validated, io)
        return query(jobs_dsn, "SELECT count(*) FROM sales.order_log")[0][0]

    march_2 = datetime(2025, 3, 2, 4, 30, tzinfo=UTC)
    assert run_as("scheduled__2025-03-02T04:30:00+00:00", march_2) == 2
    assert run_as("manual__2025-03-06T10:00:00+00:00", march_2) == 2, "the date triggered again"
    assert run_as("backfill__2025-03-02T04:30:00+00:00", march_2) == 2, "the date backfilled"
    assert run_as("scheduled__2025-03-03T04:30:00+00:00", datetime(2025, 3, 3, 4, 30, tzinfo=UTC)) == 4
    assert run_as("asset_triggered__1", None) == 6
    assert run_as("asset_triggered__1", None) == 6, "the same run without a date, cleared"
    assert run_as("asset_triggered__2", None) == 8


def test_app_events_ingest_run_again_for_its_date_appends_nothing(jobs_env, run_dag):
    """Through Airflow: the component task keys the append by the DAG and the run's logical date."""
    dsn = jobs_env["dsn"]
    jobs_data.write_events(jobs_env["data_root"], DAY)
    events = "SELECT event_id FROM analytics.payment_events ORDER BY 1"

    first = run_dag("app_events_ingest", logical_date=LOGICAL_DATE)
    assert first.state == "success", task_states(first)
    assert query(dsn, events) == [(1,), (3,)]
    again = run_dag("app_events_ingest", logical_date=LOGICAL_DATE)
    assert again.state == "success", task_states(again)
    assert query(dsn, events) == [(1,), (3,)]
    assert query(dsn, "SELECT append_key, rows FROM analytics.etlkit_append_log") == [
        (f"app_events_ingest|{LOGICAL_DATE.isoformat()}|load_events|analytics.payment_events", 2)
    ]
    load = query(
        dsn,
        "SELECT rows_out FROM declarative_component_runs WHERE component_id = 'load_events' "
        "ORDER BY started_at",
    )
    assert [row[0] for row in load][-1] == {"target": 2}, "the second run reports the same counts"
