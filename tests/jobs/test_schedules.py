"""Schedules besides cron and presets (issue 15): ``every`` (a timedelta schedule) and ``once_at`` (one
run at a given moment), mutually exclusive with ``schedule`` and each other, located when wrong."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

import jsonschema
import pendulum
import pytest

from etlkit.jobs.dag import build_job_dag
from etlkit.jobs.schema import job_json_schema
from etlkit.jobs.validation import JobDefinitionError, validate_job_text
from tests.jobs.test_validation import example

pytestmark = pytest.mark.jobs


def job_with(tmp_path, **fields) -> dict:
    job = copy.deepcopy(example())
    job.update(fields)
    return job


def dag_of(tmp_path, job: dict):
    return build_job_dag(validate_job_text(json.dumps(job), tmp_path / f"{job['name']}.json"))


def core_timetable(dag):
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.serialization.serialized_objects import DagSerialization

    # what the scheduler sees: the DAG after the dag-processor serialized it
    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    return coerce_to_core_timetable(serialized.timetable)


def next_run(timetable, earliest, catchup: bool, last=None):
    from airflow.timetables.base import DataInterval, TimeRestriction

    interval = DataInterval.exact(last) if last is not None else None
    restriction = TimeRestriction(earliest=earliest, latest=None, catchup=catchup)
    return timetable.next_dagrun_info(last_automated_data_interval=interval, restriction=restriction)


def test_every_is_a_delta_trigger_schedule_counted_from_start_date(tmp_path):
    from airflow.timetables.trigger import DeltaTriggerTimetable

    dag = dag_of(tmp_path, job_with(tmp_path, schedule=None, every="15m", catchup=True))
    timetable = core_timetable(dag)

    assert isinstance(timetable, DeltaTriggerTimetable)
    start = pendulum.datetime(2025, 1, 1, tz="UTC")
    first = next_run(timetable, start, catchup=True)
    second = next_run(timetable, start, catchup=True, last=first.logical_date)
    assert (first.logical_date, second.logical_date) == (start, start.add(minutes=15))


def test_every_without_catchup_runs_first_when_unpaused_then_one_interval_after(tmp_path):
    dag = dag_of(tmp_path, job_with(tmp_path, schedule=None, every="2h"))
    timetable = core_timetable(dag)
    before = pendulum.now("UTC")

    first = next_run(timetable, dag.start_date, catchup=False)

    assert before <= first.run_after <= pendulum.now("UTC"), "not aligned to start_date + n * 2h"
    later = first.run_after.add(hours=2)
    assert next_run(timetable, dag.start_date, catchup=False, last=first.run_after).run_after >= later


def test_once_at_runs_once_at_that_moment_read_in_the_job_timezone(tmp_path):
    from airflow.timetables.simple import OnceTimetable

    job = job_with(tmp_path, schedule=None, once_at="2025-03-02T04:30:00", timezone="Europe/Berlin")
    del job["start_date"]
    dag = dag_of(tmp_path, job)
    timetable = core_timetable(dag)

    assert isinstance(timetable, OnceTimetable)
    moment = pendulum.datetime(2025, 3, 2, 3, 30, tz="UTC")
    assert dag.start_date == moment
    first = next_run(timetable, dag.start_date, catchup=False)
    assert first.logical_date == moment and first.run_after == moment
    assert next_run(timetable, dag.start_date, catchup=False, last=moment) is None, "only once"


def test_once_at_in_the_future_waits_for_it_and_a_past_one_runs_when_unpaused(tmp_path):
    now = datetime.now(UTC).replace(microsecond=0)
    for moment in (now + timedelta(days=30), now - timedelta(days=30)):
        job = job_with(tmp_path, schedule=None, once_at=moment.isoformat())
        del job["start_date"]
        dag = dag_of(tmp_path, job)
        info = next_run(core_timetable(dag), dag.start_date, catchup=dag.catchup)
        assert info.logical_date == moment == info.run_after, "the scheduler creates it once now >= run_after"


def test_cron_schedules_are_unchanged(tmp_path):
    from airflow.timetables.trigger import CronTriggerTimetable

    timetable = core_timetable(dag_of(tmp_path, job_with(tmp_path)))
    assert isinstance(timetable, CronTriggerTimetable) and timetable.summary == "30 4 * * *"


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"every": "15m"}, "$.every", "every cannot be combined with schedule ('30 4 * * *')"),
        (
            {"once_at": "2025-03-02T04:30:00"},
            "$.once_at",
            "once_at cannot be combined with schedule ('30 4 * * *'): set one of schedule, every, once_at",
        ),
        (
            {"schedule": None, "every": "1h", "once_at": "2025-03-02T04:30:00"},
            "$.once_at",
            "once_at cannot be combined with every ('1h')",
        ),
        ({"schedule": None, "every": "30s"}, "$.every", "every '30s' is shorter than 1m"),
        ({"schedule": None, "every": "15 minutes"}, "$.every", "should match pattern"),
        ({"schedule": None, "once_at": "2025-02-30T04:30"}, "$.once_at", "is not an ISO-8601 timestamp"),
        ({"schedule": None, "once_at": "2025-03-02"}, "$.once_at", "should match pattern"),
        (
            {"schedule": None, "every": "1h", "start_date": None},
            "$",
            "start_date is required when every is set",
        ),
        (
            {"schedule": None, "once_at": "2025-03-02T23:30:00-05:00"},
            "$",
            "start_date has no effect with once_at (the run's moment is its start): remove it",
        ),
    ],
)
def test_schedule_mistakes_are_located(tmp_path, fields, path, message):
    job = job_with(tmp_path, **fields)
    with pytest.raises(JobDefinitionError) as raised:
        validate_job_text(json.dumps(job), tmp_path / "orders_daily_load.json")
    text = str(raised.value)
    assert f"  {path}" in text and message in text, text


def test_json_schema_allows_one_schedule_field_only(tmp_path):
    validator = jsonschema.Draft202012Validator(job_json_schema())
    assert not list(validator.iter_errors(job_with(tmp_path, schedule=None, every="15m")))
    assert not list(validator.iter_errors(job_with(tmp_path, schedule=None, once_at="2025-03-02T04:30:00Z")))
    assert list(validator.iter_errors(job_with(tmp_path, every="15m")))
    assert list(
        validator.iter_errors(job_with(tmp_path, schedule=None, every="1h", once_at="2025-03-02T04:30"))
    )
