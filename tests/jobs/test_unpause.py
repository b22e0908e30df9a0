"""What unpausing a scheduled example job runs: only the latest due interval (catchup false), and
nothing at all when start_date is in the future (the documented way to avoid that run)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pendulum
import pytest

pytestmark = pytest.mark.jobs

SCHEDULED_EXAMPLES = ("orders_daily_load", "customer_revenue_daily", "app_events_ingest")


def first_run_after_unpause(dag, start_date):
    """The run the scheduler creates when a never-run DAG is unpaused now (its TimeRestriction)."""
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    timetable = coerce_to_core_timetable(dag.timetable)
    restriction = TimeRestriction(earliest=start_date, latest=None, catchup=dag.catchup)
    return timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)


@pytest.mark.parametrize("dag_id", SCHEDULED_EXAMPLES)
def test_unpausing_runs_only_the_latest_due_interval_not_every_day_since_start_date(dag_bag, dag_id):
    dag = dag_bag.get_dag(dag_id)
    assert dag.catchup is False and dag.max_active_runs == 1
    now = datetime.now(UTC)

    info = first_run_after_unpause(dag, dag.start_date)

    assert now - timedelta(days=1) < info.run_after <= now, "the latest trigger time that has passed"


def test_a_start_date_after_today_makes_unpausing_run_nothing_until_that_day(dag_bag):
    dag = dag_bag.get_dag("orders_daily_load")
    tomorrow = pendulum.today("UTC").add(days=1)

    info = first_run_after_unpause(dag, tomorrow)

    assert info.run_after == tomorrow.replace(hour=4, minute=30)
