"""The alert of a try whose worker was lost: Airflow 3.3's scheduler closes such a try itself and
the dag-processor runs the task's callback with no exception (seen on the Celery stack, see
tests/stack/test_faults.py). The alert must still say what happened, with the run's context."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

from etlkit.common.alerting import failure_record, log_task_failure


def lost_try(try_number: int, max_tries: int, state: str | None = None) -> dict:
    ti = SimpleNamespace(
        dag_id="enderturing_to_warehouse",
        task_id="sync_sessions",
        map_index=-1,
        run_id="manual__2026-12-06",
        try_number=try_number,
        max_tries=max_tries,
        hostname="worker1",
        state=state,
    )
    return {"ti": ti, "params": {"run_resync": False, "page_size": 500}}


def test_a_lost_worker_with_tries_left_is_alerted_as_up_for_retry_with_the_reason(caplog):
    with caplog.at_level(logging.ERROR, logger="etlkit.alerts"):
        log_task_failure(lost_try(1, 2))
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("ETL_ALERT "))
    alert = json.loads(line.removeprefix("ETL_ALERT "))
    assert alert["event"] == "task_up_for_retry"
    assert alert["error_type"] == "WorkerLost"
    assert "worker" in alert["error"] and "heartbeat" in alert["error"]
    assert (alert["dag_id"], alert["task_id"], alert["try_number"], alert["hostname"]) == (
        "enderturing_to_warehouse",
        "sync_sessions",
        1,
        "worker1",
    )
    assert alert["params"] == {"run_resync": False, "page_size": 500}


def test_the_last_try_lost_is_alerted_as_failed():
    assert failure_record(lost_try(3, 2))["event"] == "task_failed"
    assert failure_record(lost_try(1, 2, state="failed"))["outcome"] == "failed"
    assert failure_record(lost_try(1, 2, state="TaskInstanceState.UP_FOR_RETRY"))["outcome"] == "up_for_retry"


def test_a_lost_try_is_alerted_with_the_context_it_published_last(monkeypatch):
    """The worker is gone, so the dag-processor reads the pipeline's context back from the try's XCom."""
    import airflow.sdk

    from etlkit.common.alerting import CONTEXT_XCOM_KEY, alert_context

    pushed: list[dict] = []
    running = SimpleNamespace(xcom_push=lambda key, value: pushed.append({key: value}))
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: {"ti": running})
    with alert_context(reference_date="2024-06-15"), alert_context(file="report_302.txt"):
        pass
    assert pushed == [
        {CONTEXT_XCOM_KEY: {"reference_date": "2024-06-15"}},
        {CONTEXT_XCOM_KEY: {"reference_date": "2024-06-15", "file": "report_302.txt"}},
        {CONTEXT_XCOM_KEY: {"reference_date": "2024-06-15"}},  # between files: no stale file name
        {CONTEXT_XCOM_KEY: {}},
    ]
    context = lost_try(1, 2)
    asked = {}

    def xcom_pull(**kwargs):
        asked.update(kwargs)
        return pushed[1][CONTEXT_XCOM_KEY]

    context["ti"].xcom_pull = xcom_pull
    alert = failure_record(context)
    assert alert["pipeline_context"] == {"reference_date": "2024-06-15", "file": "report_302.txt"}
    assert asked == {"task_ids": "sync_sessions", "key": CONTEXT_XCOM_KEY, "map_indexes": -1}


def test_a_task_body_outside_airflow_publishes_nothing_and_fails_nothing():
    from etlkit.common.alerting import alert_context

    with alert_context(file="report_1.txt"):
        pass
    assert failure_record(lost_try(1, 2))["pipeline_context"] == {}
