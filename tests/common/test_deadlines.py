"""Deadlines (issue 18): the daily pipelines carry a deadline alert whose callback notifies the
pipeline's channels. The scheduler is not run here: the callback is called in-process with the
context Airflow 3.3's scheduler gives it (``Deadline.handle_miss``) for a run whose deadline passed."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from etlkit.common import notify
from tests.common import test_alert_channels as channels
from tests.conftest import REPO_ROOT

# The local SMTP server and webhook receiver of the channel tests.
smtp_server = channels.smtp_server
webhook = channels.webhook
DAILY = ["sftp_visits_to_postgres", "enderturing_to_warehouse"]


@pytest.mark.parametrize("dag_id", DAILY)
def test_the_daily_pipelines_carry_a_deadline_on_their_channels(airflow_db, dag_id, monkeypatch):
    """Parsed as the dag-processor parses them (the harness switches deadlines off for dag.test())."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import DeadlineReference, SyncCallback
    from airflow.serialization.serialized_objects import DagSerialization

    monkeypatch.delenv(notify.DEADLINE_SWITCH_ENV)
    monkeypatch.delenv("AIRFLOW_VAR_ETL_ALERTING", raising=False)
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / f"{dag_id}.py"))
    dag = bag.get_dag(dag_id)
    [alert] = dag.deadline
    # Not DAGRUN_QUEUED_AT: clearing a task of such a run fails on 3.3.2 (see notify.deadline_alert).
    assert alert.reference == DeadlineReference.DAGRUN_LOGICAL_DATE
    assert alert.interval == timedelta(days=1, hours=notify.DEFAULT_DEADLINE_HOURS)
    assert isinstance(alert.callback, SyncCallback)
    assert alert.callback.path == "etlkit.common.notify.notify_deadline_missed"
    assert alert.callback.kwargs == {"dag_id": dag_id, "hours": notify.DEFAULT_DEADLINE_HOURS}
    # ... as the scheduler gets it: through the serialized DAG
    serialized = json.dumps(DagSerialization.to_dict(dag))
    assert '"etlkit.common.notify.notify_deadline_missed"' in serialized
    assert f'"dag_id": "{dag_id}", "hours": {notify.DEFAULT_DEADLINE_HOURS}' in serialized


def test_deadline_hours_come_from_the_variable_in_the_environment(monkeypatch):
    monkeypatch.delenv(notify.DEADLINE_SWITCH_ENV)
    settings = {
        "pipelines": {"enderturing_to_warehouse": {"deadline_hours": 3}},
        "default": {"deadline_hours": 8},
    }
    monkeypatch.setenv("AIRFLOW_VAR_ETL_ALERTING", json.dumps(settings))
    assert notify.deadline_hours("enderturing_to_warehouse") == 3
    assert notify.deadline_hours("sftp_visits_to_postgres") == 8
    alert = notify.deadline_alert("enderturing_to_warehouse", schedule_lag=timedelta(days=1))
    assert alert.interval == timedelta(days=1, hours=3) and alert.callback.kwargs["hours"] == 3
    monkeypatch.setenv("AIRFLOW_VAR_ETL_ALERTING", "not json")
    assert notify.deadline_hours("enderturing_to_warehouse") == notify.DEFAULT_DEADLINE_HOURS


def missed_deadline_context(dag_id: str, hours: float) -> dict:
    """What the scheduler passes: the run (DAGRunResponse as JSON) and the deadline."""
    queued_at = datetime(2026, 12, 6, 0, 2, tzinfo=UTC)
    return {
        "dag_run": {
            "dag_run_id": "scheduled__2026-12-05T00:00:00+00:00",
            "dag_id": dag_id,
            "logical_date": "2026-12-05T00:00:00Z",
            "queued_at": queued_at.isoformat(),
            "state": "running",
        },
        "deadline": {"id": "0199", "deadline_time": (queued_at + timedelta(hours=hours)).isoformat()},
    }


def test_a_passed_deadline_notifies_the_channels(
    airflow_conn, airflow_var, smtp_server, webhook, caplog, monkeypatch
):

    (inbox, smtp_port), (posts, webhook_port) = smtp_server, webhook
    channels.configure(
        airflow_conn, airflow_var, smtp_port, webhook_port
    )  # channels of enderturing_to_warehouse
    dag_id = "enderturing_to_warehouse"
    monkeypatch.delenv(notify.DEADLINE_SWITCH_ENV)
    alert = notify.deadline_alert(dag_id, schedule_lag=timedelta(days=1))
    context = missed_deadline_context(dag_id, alert.callback.kwargs["hours"])
    caplog.set_level(logging.INFO, logger="etlkit.alerts")

    # Airflow's own runner of a SyncCallback, as the executor's callback subprocess calls it.
    import structlog
    from airflow.sdk.execution_time.callback_supervisor import execute_callback

    kwargs = {**alert.callback.kwargs, "context": context}
    assert execute_callback(alert.callback.path, kwargs, "", None, structlog.get_logger()) == (True, None)

    [message], [post] = inbox.messages, posts
    expected_subject = f"[etlkit] {dag_id} run scheduled__2026-12-05T00:00:00+00:00 is late: not finished 6 h after its scheduled time"
    assert message["Subject"] == expected_subject
    for text in (post["body"]["text"], message.get_body(("html",)).get_content()):
        assert "state: running" in text and "queued at: 2026-12-06T00:02:00+00:00" in text
        assert "deadline: 2026-12-06T06:02:00+00:00" in text
        assert f"/dags/{dag_id}/runs/scheduled__2026-12-05T00%3A00%3A00%2B00%3A00" in text
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ETL_ALERT ")]
    assert json.loads(line.removeprefix("ETL_ALERT "))["event"] == "deadline_missed"
    assert not [r for r in caplog.records if r.getMessage().startswith("ETL_ALERT_CHANNEL")]


def test_a_passed_deadline_without_channels_is_the_log_line_only(airflow_var, caplog):
    airflow_var(notify.ALERTING_VARIABLE, {"pipelines": {}})
    caplog.set_level(logging.INFO, logger="etlkit.alerts")
    context = missed_deadline_context("sftp_visits_to_postgres", 6)
    assert notify.notify_deadline_missed("sftp_visits_to_postgres", 6, context=context) == {}
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ETL_ALERT ")]
    assert json.loads(line.removeprefix("ETL_ALERT "))["run_id"] == "scheduled__2026-12-05T00:00:00+00:00"


def test_deadlines_switched_off_for_in_process_runs(dag_bag, monkeypatch):
    """dag.test() of 3.3.2 fails a successful run of a DAG with deadlines: the harness parses without."""
    assert all(not dag_bag.get_dag(dag_id).deadline for dag_id in DAILY)
    monkeypatch.setenv(notify.DEADLINE_SWITCH_ENV, "off")
    assert notify.deadline_alert("sftp_visits_to_postgres", schedule_lag=timedelta(days=1)) is None
