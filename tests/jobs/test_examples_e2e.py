"""Every example job end to end with dag.test() against the real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from dev import jobs_data
from etlkit.jobs.validation import load_job
from tests.conftest import REPO_ROOT, task_states
from tests.jobs.conftest import DAY, component_rows, job_row, query

pytestmark = pytest.mark.jobs

LOGICAL_DATE = datetime(DAY.year, DAY.month, DAY.day, 4, 30, tzinfo=UTC)


def assert_metric_invariants(dag_id: str, rows: dict[str, dict]) -> None:
    """Spec §7: conservation per component, merge totals, and equal counts on both ends of every route."""
    validated = load_job(REPO_ROOT / "dags" / "jobs" / f"{dag_id}.json")
    for component_id, row in rows.items():
        rows_in, rows_out = sum(row["rows_in"].values()), sum(row["rows_out"].values())
        component = validated.components[component_id]
        if component.type == "merge":
            assert rows_out == rows_in, component_id
        elif component.type != "aggregation" and not (
            component.type == "schema_mapping" and component.config.join is not None
        ):
            assert rows_in == rows_out + row["rows_dropped"], component_id
        for port, routes in validated.inputs[component_id].items():
            upstream = sum(rows[r.source]["rows_out"].get(r.port, 0) for r in routes)
            assert row["rows_in"][port] == upstream, (component_id, port)


def assert_small_xcoms_without_row_values(dag_run, forbidden: list[str]) -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        entries = session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        texts = {entry.task_id: json.dumps(entry.value) for entry in entries}
    assert "validate" in texts and "_finalize" in texts
    for task_id, text in texts.items():
        assert len(text.encode()) < 8192, task_id
        assert not [value for value in forbidden if value in text], (task_id, text)


def counters(rows: dict[str, dict]) -> dict[str, tuple]:
    return {
        cid: (r["rows_in"], r["rows_out"], r["rows_dropped"], r["rows_rejected"]) for cid, r in rows.items()
    }


def test_orders_daily_load_gives_the_spec_outcome(jobs_env, run_dag):
    dsn, data_root = jobs_env["dsn"], jobs_env["data_root"]
    jobs_data.write_orders_export(data_root, DAY)
    query_sql = "INSERT INTO sales.orders VALUES (1001, 'C01', 'new', 2, 19.90, '2025-03-01') RETURNING 1"
    query(dsn, query_sql)

    dag_run = run_dag("orders_daily_load", logical_date=LOGICAL_DATE)

    assert dag_run.state == "success", task_states(dag_run)
    assert query(
        dsn,
        "SELECT order_id, customer_id, status, quantity, unit_price, order_date FROM sales.orders ORDER BY 1",
    ) == [
        (1001, "C01", "shipped", 2, Decimal("19.90"), date(2025, 3, 1)),
        (1003, "C03", "new", 3, Decimal("7.50"), date(2025, 3, 2)),
        (1006, "C05", "new", 5, Decimal("3.20"), date(2025, 3, 3)),
    ]
    rejects = data_root / "rejects" / "orders_20250302_rejected.csv"
    assert rejects.read_text().splitlines() == [
        "order_id,customer_id,status,quantity,unit_price,order_date,_reject_reason",
        "1005,C04,shipped,1,,2025-03-02,unparseable_value",
        "1004,C01,new,0,12.00,2025-03-02,non_positive_quantity",
    ]
    rows = component_rows(dsn, "orders_daily_load")
    assert counters(rows) == {
        "read_orders": ({"source": 6}, {"out": 6}, 0, 0),
        "drop_cancelled": ({"in": 6}, {"pass": 5}, 1, 0),
        "convert": ({"in": 5}, {"out": 5}, 0, 0),
        "validate": ({"in": 5}, {"valid": 3, "unparseable": 1, "bad_quantity": 1}, 0, 2),
        "load_orders": ({"in": 3}, {"target": 3}, 0, 0),
        "write_rejects": ({"in": 2}, {"target": 2}, 0, 0),
    }
    assert_metric_invariants("orders_daily_load", rows)
    assert rows["convert"]["details"] == {"conversion_failures": {"unit_price": 1}}
    assert rows["validate"]["reject_reasons"] == {"unparseable_value": 1, "non_positive_quantity": 1}
    assert {r["status"] for r in rows.values()} == {"success"}
    job = job_row(dsn, "orders_daily_load")
    assert (job["rows_read"], job["rows_written"], job["rows_rejected"], job["rows_dropped"]) == (6, 5, 2, 1)
    assert (job["status"], job["environment"]) == ("success", "DEV")
    assert job["connections"] == {"warehouse": "jobs_warehouse_dev"}
    assert not any(jobs_env["staging_root"].rglob("*.jsonl")), "staging is removed after a successful run"
    assert_small_xcoms_without_row_values(dag_run, forbidden=["C04", "shipped", "2025-03-02"])

    # Re-running the same date leaves the table unchanged and rewrites the same rejects file.
    first_rejects = rejects.read_text()
    assert run_dag("orders_daily_load", logical_date=LOGICAL_DATE).state == "success"
    assert query(dsn, "SELECT count(*), sum(quantity) FROM sales.orders") == [(3, 10)]
    assert rejects.read_text() == first_rejects


def test_customer_revenue_daily_joins_aggregates_and_publishes(jobs_env, run_dag):
    dsn, data_root = jobs_env["dsn"], jobs_env["data_root"]
    jobs_data.write_customers(data_root)
    query(
        dsn,
        "INSERT INTO sales.orders VALUES (1001, 'C01', 'shipped', 2, 19.90, '2025-03-01'), "
        "(1003, 'C03', 'new', 3, 7.50, '2025-03-02'), (1006, 'C05', 'new', 5, 3.20, '2025-03-03'), "
        "(1007, 'C02', 'new', 1, 5.00, '2025-03-02'), (1008, 'C99', 'new', 4, 2.50, '2025-03-01') RETURNING 1",
    )
    query(dsn, "INSERT INTO sales.region_revenue VALUES ('stale', 1, 1.00) RETURNING 1")

    dag_run = run_dag("customer_revenue_daily", logical_date=LOGICAL_DATE)

    assert dag_run.state == "success", task_states(dag_run)
    assert query(dsn, "SELECT region, orders, revenue FROM sales.region_revenue ORDER BY region") == [
        ("north", 2, Decimal("62.30")),
        ("south", 1, Decimal("5.00")),
        ("unknown", 1, Decimal("10.00")),
    ]
    report = (data_root / "reports" / "revenue_by_region_20250302.json").read_text()
    assert json.loads(report) == [
        {"region": "north", "orders": 2, "revenue": 62.3, "avg_order_value": 31.15},
        {"region": "south", "orders": 1, "revenue": 5.0, "avg_order_value": 5.0},
        {"region": "unknown", "orders": 1, "revenue": 10.0, "avg_order_value": 10.0},
    ]
    assert '"revenue":62.30' in report, "decimals keep their scale in JSON"
    rows = component_rows(dsn, "customer_revenue_daily")
    assert counters(rows) == {
        "read_orders": ({"source": 4}, {"out": 4}, 0, 0),
        "read_customers": ({"source": 4}, {"out": 4}, 0, 0),
        "enrich": ({"left": 4, "right": 4}, {"out": 4}, 0, 0),
        "by_region": ({"in": 4}, {"out": 3}, 0, 0),
        "publish_report": ({"in": 3}, {"target": 3}, 0, 0),
        "load_region_revenue": ({"in": 3}, {"target": 3}, 0, 0),
    }
    assert_metric_invariants("customer_revenue_daily", rows)
    job = job_row(dsn, "customer_revenue_daily")
    assert (job["status"], job["rows_read"], job["rows_written"]) == ("success", 8, 6)


def test_app_events_ingest_rejects_bad_lines_and_conversions_and_loads_the_rest(jobs_env, run_dag):
    dsn, data_root = jobs_env["dsn"], jobs_env["data_root"]
    jobs_data.write_events(data_root, DAY)

    dag_run = run_dag("app_events_ingest", logical_date=LOGICAL_DATE)

    assert dag_run.state == "success", task_states(dag_run)
    assert query(
        dsn, "SELECT event_id, user_id, event, occurred_at, amount FROM analytics.payment_events ORDER BY 1"
    ) == [
        (1, "u1", "purchase", datetime(2025, 3, 2, 9, 0, tzinfo=UTC), Decimal("19.99")),
        (3, "u1", "refund", datetime(2025, 3, 2, 11, 0, tzinfo=UTC), Decimal("-5.00")),
    ]
    rejects = (data_root / "events" / "rejects" / "events_20250302_rejected.csv").read_text().splitlines()
    assert rejects == [
        "event_id,user_id,event,occurred_at,amount,_reject_reason",
        "4,u3,purchase,not-a-time,3.50,conversion_failed:occurred_at",
        "5,u4,purchase,2025-03-02T12:00:00,abc,conversion_failed:amount",
        "x7,u6,purchase,2025-03-02T13:00:00,1.00,conversion_failed:event_id",
    ]
    others = [
        json.loads(line)
        for line in (data_root / "events" / "out" / "other_20250302.jsonl").read_text().splitlines()
    ]
    assert others == [
        {"event_id": 2, "event": "page_view", "occurred_at": "2025-03-02T09:01:00+00:00"},
        {"event_id": 101, "event": "app_open", "occurred_at": "2025-03-02T09:00:00+00:00"},
        {"event_id": 102, "event": "purchase", "occurred_at": "2025-03-02T09:30:00+00:00"},
    ]
    rows = component_rows(dsn, "app_events_ingest")
    assert counters(rows) == {
        "read_web": ({"source": 7}, {"out": 6}, 1, 1),
        "read_mobile": ({"source": 2}, {"out": 2}, 0, 0),
        "combine": ({"in": 8}, {"out": 8}, 0, 0),
        "typed": ({"in": 8}, {"out": 5, "reject": 3}, 0, 3),
        "purchases_only": ({"in": 5}, {"pass": 2, "fail": 3}, 0, 0),
        "load_events": ({"in": 2}, {"target": 2}, 0, 0),
        "other_events": ({"in": 3}, {"target": 3}, 0, 0),
        "write_rejects": ({"in": 3}, {"target": 3}, 0, 0),
    }
    assert_metric_invariants("app_events_ingest", rows)
    assert rows["read_web"]["reject_reasons"] == {"malformed_line": 1}
    assert rows["typed"]["details"] == {"conversion_failures": {"event_id": 1, "occurred_at": 1, "amount": 1}}
    job = job_row(dsn, "app_events_ingest")
    assert (job["rows_read"], job["rows_written"], job["rows_rejected"], job["rows_dropped"]) == (9, 8, 4, 1)
