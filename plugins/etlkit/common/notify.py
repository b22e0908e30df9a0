"""Alert channels: e-mail and Slack-compatible webhooks through Airflow's notifiers.

Which channels a pipeline alerts on is set in one JSON Variable, ``etl_alerting`` (example in the
README, "Monitoring"): ``pipelines.<dag id>`` (else ``default``) holds ``channels`` (``email``,
``slack``), ``email.conn_id``/``email.to``/``email.from``, ``slack.webhook_conn_id``,
``retries_alert`` (default false: final failures only) and ``deadline_hours``.

Pipelines are keyed by DAG id; one without an entry takes ``default``. No channel means the
``ETL_ALERT`` log line only. Each channel gets ``CHANNEL_TIMEOUT_S`` in all: a channel that is down
or hangs is logged and left behind, never failing or holding up the task.
"""

from __future__ import annotations

import html
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote

log = logging.getLogger("etlkit.alerts")

ALERTING_VARIABLE = "etl_alerting"
CHANNEL_TIMEOUT_S = 10
ERROR_CHARS = 500  # the full error is in the task log the message links to


def alerting_settings(raw: str | None) -> dict[str, Any]:
    try:
        settings = json.loads(raw) if raw else {}
    except ValueError:
        log.warning("the %s Variable is not JSON: alerts go to the log only", ALERTING_VARIABLE)
        return {}
    return settings if isinstance(settings, dict) else {}


def read_alerting_settings() -> dict[str, Any]:
    """The ``etl_alerting`` Variable: one lookup, ``{}`` when it is absent or unreadable."""
    try:
        from airflow.sdk import Variable

        return alerting_settings(Variable.get(ALERTING_VARIABLE, default=None))
    except Exception:  # alerting must never fail the task
        log.debug("could not read the %s Variable", ALERTING_VARIABLE, exc_info=True)
        return {}


def pipeline_settings(settings: dict[str, Any], dag_id: str | None) -> dict[str, Any]:
    pipelines = settings.get("pipelines") or {}
    chosen = pipelines.get(dag_id) if dag_id in pipelines else settings.get("default")
    return chosen if isinstance(chosen, dict) else {}


def log_url(dag_id: Any, run_id: Any, task_id: Any, map_index: Any, try_number: Any) -> str:
    """The task try's log in the UI, built as Airflow's ``TaskInstance.log_url`` builds it."""
    from airflow.configuration import conf

    base_url = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
    url = f"{base_url}/dags/{dag_id}/runs/{quote(str(run_id))}/tasks/{task_id}"
    if isinstance(map_index, int) and map_index >= 0:
        url += f"/mapped/{map_index}"
    if isinstance(try_number, int) and try_number > 0:
        url += f"?try_number={try_number}"
    return url


def _context_line(pipeline_context: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(pipeline_context.items())) or "-"


def failure_message(record: dict[str, Any]) -> tuple[str, str]:
    """(subject, text) of a task failure alert, from ``alerting.failure_record`` (no params: they may
    hold anything a user passed)."""
    outcome = "will retry" if record["outcome"] == "up_for_retry" else "failed"
    subject = f"[etlkit] {record['dag_id']}.{record['task_id']} {outcome} (try {record['try_number']})"
    url = log_url(
        record["dag_id"], record["run_id"], record["task_id"], record["map_index"], record["try_number"]
    )
    text = "\n".join(
        [
            subject,
            f"dag: {record['dag_id']}",
            f"task: {record['task_id']}",
            f"run: {record['run_id']}",
            f"try: {record['try_number']}",
            f"pipeline context: {_context_line(record['pipeline_context'] or {})}",
            f"error: {record['error_type']}: {str(record['error'])[:ERROR_CHARS]}",
            f"log: {url}",
        ]
    )
    return subject, text


def deadline_message(
    dag_id: str, dag_run: dict[str, Any], deadline: dict[str, Any], hours: float
) -> tuple[str, str]:
    run_id = dag_run.get("dag_run_id") or dag_run.get("run_id")
    subject = f"[etlkit] {dag_id} run {run_id} is late: not finished {hours:g} h after its scheduled time"
    base_url = log_url(dag_id, run_id, "", None, None).rsplit("/tasks/", 1)[0]
    text = "\n".join(
        [
            subject,
            f"dag: {dag_id}",
            f"run: {run_id}",
            f"state: {dag_run.get('state')}",
            f"logical date: {dag_run.get('logical_date')}",
            f"queued at: {dag_run.get('queued_at')}",
            f"deadline: {deadline.get('deadline_time')}",
            f"run in the UI: {base_url}",
        ]
    )
    return subject, text


def _email(settings: dict[str, Any], subject: str, text: str) -> Any:
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    email = settings.get("email") or {}
    return SmtpNotifier(
        smtp_conn_id=email.get("conn_id", "smtp_default"),
        to=email["to"],
        from_email=email.get("from"),
        subject=subject,
        html_content=f"<pre>{html.escape(text)}</pre>",
    )


def _slack(settings: dict[str, Any], subject: str, text: str) -> Any:
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

    slack = settings.get("slack") or {}
    return SlackWebhookNotifier(
        slack_webhook_conn_id=slack.get("webhook_conn_id", "slack_default"),
        text=text,
        timeout=CHANNEL_TIMEOUT_S,
        # slack_sdk's default retry logs the webhook URL, whose path is the secret token
        retry_handlers=[],
    )


CHANNELS: dict[str, Callable[[dict[str, Any], str, str], Any]] = {"email": _email, "slack": _slack}


def _send(name: str, notifier: Any, context: dict[str, Any], failures: dict[str, BaseException]) -> None:
    try:
        # notify(), not __call__: the message is final text, and an error quoting "{{" must not be
        # rendered as a template.
        notifier.notify(context)
    except BaseException as exc:  # a channel's failure is reported, never raised
        failures[name] = exc


def send_to_channels(
    settings: dict[str, Any], subject: str, text: str, context: dict[str, Any]
) -> dict[str, str]:
    """Send on every channel of ``settings`` at once, waiting ``CHANNEL_TIMEOUT_S`` at most in all.

    Returns ``{channel: "sent" | "failed" | "timed out"}``; failures are logged without the message.
    """
    outcome: dict[str, str] = {}
    failures: dict[str, BaseException] = {}
    threads: dict[str, threading.Thread] = {}
    for name in settings.get("channels") or []:
        if name not in CHANNELS:
            log.warning("unknown alert channel %r in %s", name, ALERTING_VARIABLE)
            continue
        try:
            notifier = CHANNELS[name](settings, subject, text)
        except Exception as exc:
            failures[name] = exc
            continue
        thread = threading.Thread(target=_send, args=(name, notifier, context, failures), daemon=True)
        thread.start()
        threads[name] = thread
    give_up_at = time.monotonic() + CHANNEL_TIMEOUT_S
    for name, thread in threads.items():
        thread.join(max(0.0, give_up_at - time.monotonic()))
        if thread.is_alive():
            outcome[name] = "timed out"
            log.error(
                "ETL_ALERT_CHANNEL %s timed out after %s s: alert not delivered", name, CHANNEL_TIMEOUT_S
            )
    for name, exc in failures.items():
        outcome[name] = "failed"
        log.error("ETL_ALERT_CHANNEL %s failed: %s: %s", name, type(exc).__name__, str(exc)[:300])
    for name in threads:
        outcome.setdefault(name, "sent")
    return outcome


def notify_failure(record: dict[str, Any], context: dict[str, Any]) -> dict[str, str]:
    """Send a task failure (or retry, when the pipeline asks for those) to its pipeline's channels."""
    settings = pipeline_settings(read_alerting_settings(), record.get("dag_id"))
    if not settings.get("channels"):
        return {}
    if record["outcome"] == "up_for_retry" and not settings.get("retries_alert", False):
        return {}
    subject, text = failure_message(record)
    return send_to_channels(settings, subject, text, context)


# -- deadlines ------------------------------------------------------------------------------------

DEFAULT_DEADLINE_HOURS = 6.0


def deadline_hours(dag_id: str, default: float = DEFAULT_DEADLINE_HOURS) -> float:
    """N for ``dag_id``'s deadline, read when the DAG file is parsed.

    Airflow computes a run's deadline when the run is created, from the interval the DAG was
    serialized with; a DAG file cannot read a Variable at parse time. So N comes from
    ``etl_alerting`` only as deployments provide it, in the ``AIRFLOW_VAR_ETL_ALERTING``
    environment (no I/O), else ``default``; a change applies once the DAG files are parsed again.
    """
    settings = pipeline_settings(alerting_settings(os.environ.get("AIRFLOW_VAR_ETL_ALERTING")), dag_id)
    try:
        hours = float(settings.get("deadline_hours", default))
    except (TypeError, ValueError):
        return default
    return hours if hours > 0 else default


# ``dag.test()`` (and so ``airflow dags test``) of Airflow 3.3.2 fails every successful run of a DAG
# with a deadline: it deserializes the DAG without writing its deadline alerts, and the run's end
# looks them up by id. In-process runners (the tests, ``make demo``) parse with this set to "off".
DEADLINE_SWITCH_ENV = "ETLKIT_DEADLINE_ALERTS"


def deadline_alert(
    dag_id: str, schedule_lag: timedelta, default_hours: float = DEFAULT_DEADLINE_HOURS
) -> Any:
    """A deadline alert for ``dag_id``: a run not finished N hours after its scheduled time notifies
    its channels (``notify_deadline_missed``, run by the executor). None when switched off.

    The scheduled time is the logical date plus ``schedule_lag`` (a daily interval timetable's run
    starts one day after its logical date). Not ``DAGRUN_QUEUED_AT``: on Airflow 3.3.2 clearing a
    task of a run with such a deadline fails (500: the clear recomputes it from the stored interval,
    a dict); a logical-date deadline is not recomputed. A run without a logical date gets none.
    """
    from airflow.sdk import DeadlineAlert, DeadlineReference, SyncCallback

    if os.environ.get(DEADLINE_SWITCH_ENV, "").lower() == "off":
        return None
    hours = deadline_hours(dag_id, default_hours)
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=schedule_lag + timedelta(hours=hours),
        callback=SyncCallback(notify_deadline_missed, kwargs={"dag_id": dag_id, "hours": hours}),
    )


def notify_deadline_missed(
    dag_id: str, hours: float, context: dict[str, Any] | None = None
) -> dict[str, str]:
    """The deadline callback: an ``ETL_ALERT`` log line, then the pipeline's channels (read now)."""
    context = context or {}
    dag_run, deadline = context.get("dag_run") or {}, context.get("deadline") or {}
    subject, text = deadline_message(dag_id, dag_run, deadline, hours)
    record = {
        "event": "deadline_missed",
        "dag_id": dag_id,
        "run_id": dag_run.get("dag_run_id") or dag_run.get("run_id"),
        "deadline_hours": hours,
        "deadline_time": deadline.get("deadline_time"),
        "state": dag_run.get("state"),
    }
    log.error("ETL_ALERT %s", json.dumps(record, default=str, sort_keys=True))
    settings = pipeline_settings(read_alerting_settings(), dag_id)
    if not settings.get("channels"):
        return {}
    return send_to_channels(settings, subject, text, context)
