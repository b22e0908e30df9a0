"""The job file's ``on_asset``: an asset-triggered DAG, never combined with a time schedule."""

from __future__ import annotations

import json

import pytest

from etlkit.jobs.dag import build_job_dag
from etlkit.jobs.validation import JobDefinitionError, load_job, validate_job_text
from tests.conftest import REPO_ROOT
from tests.jobs.test_schedules import core_timetable, job_with

pytestmark = pytest.mark.jobs
EXAMPLE = REPO_ROOT / "dags" / "jobs" / "visitor_report_after_load.json"


def test_the_example_job_is_triggered_by_the_visits_asset():
    from airflow.timetables.simple import AssetTriggeredTimetable

    dag = build_job_dag(load_job(EXAMPLE))

    timetable = core_timetable(dag)
    assert isinstance(timetable, AssetTriggeredTimetable)
    assert [ref.uri for ref in timetable.asset_condition.iter_asset_refs()] == [
        "x-etlkit://postgres_visits/visits"
    ]
    assert (
        dag.get_task("publish_report").outlets[0].uri
        == "x-etlkit://jobs/visitor_report_after_load/publish_report"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"on_asset": "x-etlkit://postgres_visits/visits"}, "on_asset cannot be combined with schedule"),
        ({"schedule": None, "on_asset": "visits"}, "should match pattern"),
    ],
)
def test_on_asset_mistakes_are_located(tmp_path, fields, message):
    job = job_with(tmp_path, **fields)
    with pytest.raises(JobDefinitionError) as raised:
        validate_job_text(json.dumps(job), tmp_path / "orders_daily_load.json")
    assert "$.on_asset" in str(raised.value) and message in str(raised.value)
