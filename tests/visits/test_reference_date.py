"""R (spec §5.2) is the date of the run's trigger time, for scheduled and manual runs alike."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from etlkit.visits.run import reference_date
from tests.conftest import task_states
from tests.visits.conftest import DAG_ID
from tests.visits.test_metrics_and_recovery import opened, report, visitor

pytestmark = pytest.mark.visits


def run_as_the_scheduler(visits, monkeypatch, trigger: datetime):
    """Run the DAG once as the scheduler would create the run triggered at ``trigger``.

    ``dag.test()`` makes a manual run; here its run is created instead the way
    ``SchedulerJobRunner._create_dag_runs`` does: run type scheduled, dates from the DAG's own
    timetable (``next_dagrun_info`` after the previous day's run), so the logical date is the
    interval's start and ``run_after`` the trigger time.
    """
    from airflow.models import dagrun as dagrun_module
    from airflow.models.dagrun import DagRun
    from airflow.timetables.base import DataInterval, TimeRestriction
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import or_, select

    made = {}

    def create_as_scheduler(*, dag, session, conf, **_manual_run_fields):
        previous = DataInterval(trigger - timedelta(days=2), trigger - timedelta(days=1))
        info = dag.timetable.next_dagrun_info(
            last_automated_data_interval=previous,
            restriction=TimeRestriction(earliest=None, latest=None, catchup=True),
        )
        run_id = dag.timetable.generate_run_id(
            run_type=DagRunType.SCHEDULED, run_after=info.run_after, data_interval=info.data_interval
        )
        for old in session.scalars(
            select(DagRun).where(
                DagRun.dag_id == dag.dag_id,
                or_(DagRun.run_id == run_id, DagRun.logical_date == info.logical_date),
            )
        ):
            session.delete(old)
        session.commit()
        made["run"] = dag.create_dagrun(
            run_id=run_id,
            logical_date=info.logical_date,
            data_interval=info.data_interval,
            run_after=info.run_after,
            conf=conf,
            run_type=DagRunType.SCHEDULED,
            triggered_by=DagRunTriggeredByType.TIMETABLE,
            state=DagRunState.RUNNING,
            start_date=info.run_after,
            session=session,
        )
        return made["run"]

    monkeypatch.setattr(dagrun_module, "get_or_create_dagrun", create_as_scheduler)
    dag_run = visits.run_dag(DAG_ID, conf={}, logical_date=trigger - timedelta(days=1))
    assert made["run"].run_type == DagRunType.SCHEDULED
    return dag_run


def test_scheduled_run_uses_the_trigger_date_not_the_interval_start(visits, monkeypatch):
    visits.put(
        "report_1.txt",
        report(opened("june@example.com", "01/06/2024"), opened("may@example.com", "31/05/2024")),
    )
    trigger = datetime(2024, 6, 1, 0, 2, tzinfo=UTC)

    dag_run = run_as_the_scheduler(visits, monkeypatch, trigger)

    assert dag_run.state == "success", task_states(dag_run)
    # The run the scheduler made: logical date = the interval's start, the day before.
    assert (dag_run.run_type, dag_run.logical_date, dag_run.run_after) == (
        "scheduled",
        trigger - timedelta(days=1),
        trigger,
    )
    assert visits.query("SELECT reference_date FROM load_log") == [(date(2024, 6, 1),)]
    # R = 1 June: the June visit is this month's, the May one only this year's.
    assert visitor(visits, "june@example.com") == ("2024-06-01", "2024-06-01", 1, 1, 1)
    assert visitor(visits, "may@example.com") == ("2024-05-31", "2024-05-31", 1, 1, 0)


def test_manual_run_uses_its_trigger_date(visits):
    visits.put("report_1.txt", report(opened("a@example.com", "01/05/2024")))

    dag_run = visits.run(reference_date=None)

    assert dag_run.state == "success", task_states(dag_run)
    assert dag_run.run_type == "manual"
    assert visits.query("SELECT reference_date FROM load_log") == [(dag_run.run_after.date(),)]


def test_r_is_the_trigger_date_in_the_pipeline_timezone():
    # 00:02 on 1 June in Mexico City is 06:02 UTC (the scheduled run's logical date is a day earlier).
    trigger = datetime(2024, 6, 1, 6, 2, tzinfo=UTC)
    assert reference_date(None, trigger, "America/Mexico_City") == date(2024, 6, 1)
    # A manual run triggered late on 31 May local time (01:30 UTC on 1 June).
    late = datetime(2024, 6, 1, 1, 30, tzinfo=UTC)
    assert reference_date(None, late, "America/Mexico_City") == date(2024, 5, 31)
    assert reference_date(None, late, "UTC") == date(2024, 6, 1)
    # The setting (the run's param reference_date) still overrides.
    assert reference_date(date(2023, 1, 2), late, "UTC") == date(2023, 1, 2)
