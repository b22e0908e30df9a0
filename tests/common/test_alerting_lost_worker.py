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


class VariableStore(dict):
    """Airflow's Variable API as the worker and the dag-processor reach it, over one dict."""

    def get(self, key, default=None):
        return super().get(key, default)

    def set(self, key, value, description=None):
        self[key] = value

    def delete(self, key):
        self.pop(key, None)


def alerts_in(caplog) -> list[dict]:
    return [
        json.loads(r.getMessage().removeprefix("ETL_ALERT "))
        for r in caplog.records
        if r.getMessage().startswith("ETL_ALERT ")
    ]


def test_a_lost_try_is_alerted_once_with_the_context_it_kept_last(monkeypatch, caplog):
    """The worker is gone, so the dag-processor reads the pipeline's context back from where the try
    kept it (a Variable per try: a retry clears XComs when it starts, and may start first); of
    Airflow's two callbacks for one lost try, only the first alerts."""
    import airflow.sdk

    from etlkit.common import alerting
    from etlkit.common.alerting import alert_context, context_variable

    monkeypatch.setattr(alerting, "_variables_reachable", lambda: True)  # as in the dag-processor
    store = VariableStore()
    monkeypatch.setattr(airflow.sdk, "Variable", store)
    running = lost_try(1, 2)["ti"]
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: {"ti": running})
    key = context_variable(running)
    with alert_context(reference_date="2024-06-15"):
        with alert_context(file="report_301.txt"):
            pass
        assert json.loads(store[key])["context"] == {"reference_date": "2024-06-15"}  # no stale file
        with alert_context(file="report_302.txt"):
            kept_while_loading = json.loads(store[key])
    assert store == {}  # a try that left every block keeps nothing
    assert kept_while_loading == {
        "try_number": 1,
        "context": {"reference_date": "2024-06-15", "file": "report_302.txt"},
    }

    store[key] = json.dumps(kept_while_loading)  # the worker was lost inside the block
    retry = lost_try(2, 2)["ti"]  # and the retry runs before the dag-processor's callbacks
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: {"ti": retry})
    with (
        caplog.at_level(logging.INFO, logger="etlkit.alerts"),
        alert_context(reference_date="2024-06-15"),
        alert_context(file="report_301.txt"),
    ):
        log_task_failure(lost_try(1, 2))  # the heartbeat purge's callback, in the dag-processor
        log_task_failure(lost_try(1, 2))  # the executor event's callback
    [alert] = alerts_in(caplog)
    assert alert["pipeline_context"] == {"reference_date": "2024-06-15", "file": "report_302.txt"}
    assert (alert["event"], alert["try_number"]) == ("task_up_for_retry", 1)
    assert store == {}  # the lost try's removed by the second callback, the retry's by its end

    with caplog.at_level(logging.INFO, logger="etlkit.alerts"):
        log_task_failure(lost_try(3, 2))  # a try that kept nothing: alerted, and nothing is left behind
    assert alerts_in(caplog)[-1]["event"] == "task_failed" and store == {}


def test_a_task_body_outside_airflow_publishes_nothing_and_fails_nothing():
    from etlkit.common.alerting import alert_context

    with alert_context(file="report_1.txt"):
        pass
    assert failure_record(lost_try(1, 2))["pipeline_context"] == {}
