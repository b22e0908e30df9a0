"""Alerting for real on the Celery stack: Airflow's Sentry integration (sentry-sdk, DSN by environment)
sends a failing task's event to the local endpoint the harness started (``dev/sentry_server.py``),
and the task's ``on_failure_callback`` runs on the worker that ran the task.

The failure: every Ender Turing token is refused (HTTP 401), a permanent cause, so the task fails
on its first try. The envelopes are then searched for every secret the stack holds.
"""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from pathlib import Path

from dev.stack import ENDERTURING_DAYS, WORKERS
from tests.stack.test_faults import wait_for_settled_dag

ET_DAG = "enderturing_to_warehouse"
FAILING_TASK = "refresh_dictionaries"
SECRET_ENV = re.compile(r"SECRET|PASSWORD$|FERNET|TOKEN|API_KEY")


def stack_secrets(stack) -> dict[str, str]:
    """Every secret of the stack, by where it comes from (values short enough to be noise are skipped)."""
    env = stack.stack.environment("scheduler")
    found = {key: value for key, value in env.items() if SECRET_ENV.search(key) and value}
    for key, value in env.items():
        is_json_connection = key.startswith("AIRFLOW_CONN_") and value.startswith("{")
        password = json.loads(value).get("password") if is_json_connection else None
        if password:
            found[f"{key} password"] = password
    found["Ender Turing password"] = stack.systems.enderturing.password
    found["Signum API key"] = stack.systems.signum_key
    found["UI login password"] = stack.stack.password
    found["REST API JWT"] = stack.stack.token()
    for number, token in enumerate(list(stack.systems.enderturing._tokens)):
        found[f"Ender Turing access token {number}"] = token
    return {where: value for where, value in found.items() if len(value) >= 8}


def wait_for_events(server, predicate, timeout_s: float = 120) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if matching := [event for event in server.events() if predicate(event)]:
            return matching
        time.sleep(1)
    raise AssertionError(f"no matching Sentry event; received: {server.events()}")


def tags_of(event: dict) -> dict[str, str]:
    tags = event.get("tags") or {}
    return dict(tags) if isinstance(tags, dict) else {key: value for key, value in tags}


def message_of(event: dict) -> str:
    """The text of an event made from a log record (Sentry's logging integration)."""
    entry = event.get("logentry") or {}
    if entry.get("formatted"):
        return str(entry["formatted"])
    message, params = entry.get("message") or event.get("message") or "", entry.get("params")
    return str(message % tuple(params)) if params else str(message)


def test_a_failing_task_reaches_sentry_with_its_coordinates_and_no_secret(stack, stack_output: Path):
    server, fake = stack.systems.sentry, stack.systems.enderturing
    wait_for_settled_dag(stack, ET_DAG)  # so that only the run below meets the refused tokens
    day = ENDERTURING_DAYS[-1] + timedelta(days=30)  # a day no other test loads; nothing loads anyway
    fake.reject_all_tokens = True
    try:
        run_id = stack.trigger(ET_DAG, {"run_resync": False}, f"{day}T03:00:00Z")
        run = stack.wait(ET_DAG, run_id)
    finally:
        fake.reject_all_tokens = False
    tis = {ti["task_id"]: ti for ti in stack.task_instances(ET_DAG, run_id)}
    failed = tis[FAILING_TASK]
    assert (run["state"], failed["state"], failed["try_number"]) == ("failed", "failed", 1), tis
    assert failed["hostname"] in WORKERS

    def is_the_exception(event: dict) -> bool:
        tags = tags_of(event)
        return (
            bool(event.get("exception"))
            and (tags.get("dag_id"), tags.get("task_id")) == (ET_DAG, FAILING_TASK)
            and str(tags.get("logical_date", "")).startswith(str(day))
        )

    def is_the_alert(event: dict) -> bool:
        return message_of(event).startswith("ETL_ALERT ") and run_id in message_of(event)

    # The SDK's capture of the task's error, and the error log line of the same failure.
    exception_events = wait_for_events(server, is_the_exception)
    [alert_event] = wait_for_events(server, is_the_alert)
    (stack_output / "sentry_events.json").write_text(
        json.dumps({"exception": exception_events, "alert": alert_event}, indent=2, default=str)
    )
    for event in exception_events:
        tags = tags_of(event)
        assert (tags["run_id"], str(tags["try_number"])) == (run_id, "1")
        assert tags["worker"] == failed["hostname"]  # the worker that ran the task (REST's hostname)
        assert event["environment"] == "stack"
        assert "401" in json.dumps(event["exception"])
    alert = json.loads(message_of(alert_event).removeprefix("ETL_ALERT "))
    assert (alert["event"], alert["dag_id"], alert["task_id"], alert["run_id"], alert["try_number"]) == (
        "task_failed",
        ET_DAG,
        FAILING_TASK,
        run_id,
        1,
    )
    assert alert["hostname"] == failed["hostname"]
    received = server.raw_text()
    leaked = [where for where, secret in stack_secrets(stack).items() if secret in received]
    assert leaked == [], f"secrets in the Sentry envelopes: {leaked}"
    assert server.rejected == 0
