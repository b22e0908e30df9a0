"""The retry policy on the Airflow side: task ``retry_policy`` objects, ``retry_default_args`` and the
scheduler-side listener for tries a worker never closed. The rules themselves (which causes are
transient, ``RetrySettings``, the backoff) are ``etlkit.common.retry``."""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import timedelta
from typing import Any

from airflow.listeners import hookimpl
from airflow.sdk.definitions.retry_policy import RetryAction, RetryDecision, RetryPolicy

from etlkit.common.alerting import tag_error_report
from etlkit.common.retry import PERMANENT, RETRY_VARIABLE, RetrySettings, Verdict, explain

log = logging.getLogger(__name__)


def _read_overrides() -> dict[str, Any]:
    try:
        from airflow.sdk import Variable

        raw = Variable.get(RETRY_VARIABLE, default=None)
    except Exception:  # outside a task only the env form is visible
        raw = os.environ.get(f"AIRFLOW_VAR_{RETRY_VARIABLE.upper()}")
    if not raw:
        return {}
    return raw if isinstance(raw, dict) else json.loads(raw)


def _attach(exception: BaseException, verdict: Verdict) -> None:
    """Put the decision on the exception: a note for tracebacks, an attribute for alerts."""
    if getattr(exception, "etlkit_retry_decision", None) == verdict.reason:
        return
    exception.etlkit_retry_decision = verdict.reason
    exception.add_note(f"Retry policy: {verdict.reason}")


def _judged(exception: BaseException, context) -> Verdict:
    """The verdict on a failed try, noted on the exception and on the error report."""
    tag_error_report(context)
    verdict = explain(exception)
    _attach(exception, verdict)
    return verdict


class ClassifiedRetryPolicy(RetryPolicy):
    """Permanent causes fail at once; transient ones take the task's own retries and delays."""

    def evaluate(self, exception, try_number, max_tries, context=None):
        verdict = _judged(exception, context)
        if verdict.kind == PERMANENT:
            return RetryDecision.fail(reason=verdict.reason)
        return RetryDecision(action=RetryAction.DEFAULT, reason=verdict.reason)

    def serialize(self) -> dict[str, Any]:
        return {"__type": "ClassifiedRetryPolicy"}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> ClassifiedRetryPolicy:
        return cls()


class PipelineRetryPolicy(RetryPolicy):
    """Permanent causes fail at once with the remedy; transient ones retry with backoff (see ``explain``)."""

    def __init__(self, pipeline: str, **defaults: Any):
        self.pipeline = pipeline
        self.defaults = defaults
        RetrySettings(**defaults)  # fail at parse time on a typo

    def evaluate(self, exception, try_number, max_tries, context=None):
        verdict = _judged(exception, context)
        if verdict.kind == PERMANENT:
            return RetryDecision.fail(reason=verdict.reason)
        settings = RetrySettings.from_overrides(
            _read_overrides(), self.pipeline, base=RetrySettings(**self.defaults)
        )
        if try_number > settings.retries:
            return RetryDecision.fail(
                reason=f"{verdict.reason}; retries exhausted ({settings.retries}, {RETRY_VARIABLE})"
            )
        return RetryDecision.retry(
            delay=settings.delay_for(try_number),
            reason=f"{verdict.reason}; try {try_number} of {settings.retries + 1}",
        )

    def serialize(self) -> dict[str, Any]:
        return {"__type": "PipelineRetryPolicy", "pipeline": self.pipeline, "defaults": self.defaults}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> PipelineRetryPolicy:
        return cls(data["pipeline"], **data.get("defaults", {}))


def retry_default_args(pipeline: str, **defaults: Any) -> dict[str, Any]:
    """``default_args`` entries every pipeline DAG uses; ``defaults`` set the code-level
    ``RetrySettings`` (the Variable still overrides them at run time)."""
    settings = RetrySettings(**defaults)
    return {
        # The task's retries bound every retry decision, so they equal the policy's: the UI's
        # "try n of m" is then true, and the Variable can lower the count but not raise it.
        "retries": settings.retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_s),
        "retry_exponential_backoff": settings.backoff,
        "max_retry_delay": timedelta(seconds=settings.max_retry_delay_s),
        "retry_policy": PipelineRetryPolicy(pipeline, **defaults),
    }


# ---- tries the scheduler closes itself (worker lost, heartbeat timed out) ------------------------
#
# No exception reaches a retry policy when a worker is lost: the scheduler fails the try and, with
# retries left, puts it up for retry after the task's static ``retry_delay`` (with backoff), never
# reading ``etl_retry_policy``. Airflow honours a policy's delay through the try's
# ``retry_delay_override``, which only a worker reporting its own failure sets. This listener runs in
# the scheduler when it closes such a try and sets that override from the same settings the worker's
# policy would use, so both kinds of failure retry on the same schedule.

PIPELINE_TAGS = {"visits": "visits", "sierra": "sierra", "enderturing": "enderturing", "movies": "movies"}
PIPELINE_TAGS["declarative-job"] = "jobs"


def pipeline_of_tags(tags: Any) -> str | None:
    """The pipeline a DAG belongs to, from its tags (``pipelines`` overrides are keyed by it)."""
    for tag in tags or ():
        if str(tag) in PIPELINE_TAGS:
            return PIPELINE_TAGS[str(tag)]
    return None


def _read_overrides_on_server() -> dict[str, Any]:
    """The Variable as the scheduler sees it (environment, secrets backends, metadata DB)."""
    from airflow.models.variable import Variable as ServerVariable

    raw = ServerVariable.get(RETRY_VARIABLE, default_var=None)
    if not raw:
        return {}
    return raw if isinstance(raw, dict) else json.loads(raw)


def settings_of_task(task: Any, overrides: dict[str, Any]) -> RetrySettings:
    """The policy's settings for a (serialized) task: its own retry fields are the code defaults."""
    base = RetrySettings(
        retries=int(task.retries or 0),
        retry_delay_s=task.retry_delay.total_seconds(),
        backoff=float(task.retry_exponential_backoff or 1.0),
        max_retry_delay_s=(
            task.max_retry_delay or timedelta(seconds=RetrySettings.max_retry_delay_s)
        ).total_seconds(),
    )
    dag = getattr(task, "dag", None)
    return RetrySettings.from_overrides(overrides, pipeline_of_tags(getattr(dag, "tags", None)), base=base)


def closed_try_retry(task_instance: Any, overrides: dict[str, Any]) -> tuple[float, str] | None:
    """(delay in seconds, reason) for a try the scheduler put up for retry, or None when the policy
    does not apply (no policy on the task, or the worker already decided)."""
    task = getattr(task_instance, "task", None)
    if task is None or not getattr(task, "has_retry_policy", False) or not task.retries:
        return None
    if str(task_instance.state).rsplit(".", 1)[-1].lower() != "up_for_retry":
        return None
    if task_instance.retry_delay_override is not None:
        return None
    settings = settings_of_task(task, overrides)
    delay = settings.delay_for(task_instance.try_number).total_seconds()
    reason = (
        f"transient: the worker running try {task_instance.try_number} was lost or stopped heartbeating; "
        f"retried after {delay:g} s ({RETRY_VARIABLE}); try {task_instance.try_number} of {task.retries + 1}"
    )
    return delay, reason


# The scheduler's message for a try the executor reports failed (a lost worker's included, after the
# heartbeat purge) names the state the try was in: "... but the task instance's state attribute is
# running" (airflow/jobs/scheduler_job_runner.py, _process_executor_events, 3.3.2).
_RAN_ON_A_WORKER = re.compile(
    r"state attribute is (TaskInstanceState\.)?(running|restarting)\b", re.IGNORECASE
)


class ClosedTryRetryListener:
    """Airflow listener (see ``plugins/etlkit_retry_plugin.py``): the scheduler's side of the policy."""

    @hookimpl
    def on_task_instance_failed(self, previous_state, task_instance, error) -> None:
        from airflow.models.taskinstance import TaskInstance

        if not isinstance(task_instance, TaskInstance):  # a worker's own failure: its policy decided
            return
        if not _RAN_ON_A_WORKER.search(str(error or "")):
            # Failed while queued (never reached a worker, e.g. the broker was down): not a lost try;
            # Airflow's delay applies, as the policy's 5 s on the stack burnt 5 tries in a 30 s outage.
            return
        try:
            decision = closed_try_retry(task_instance, _read_overrides_on_server())
        except Exception:  # the standard retry applies; the scheduler must never fail on it
            log.exception("Retry policy evaluation failed for %s", task_instance)
            return
        if decision is not None:
            task_instance.retry_delay_override, task_instance.retry_reason = decision[0], decision[1][:500]
            log.warning("Retry policy for %s: %s", task_instance, decision[1])


closed_try_retry_listener = ClosedTryRetryListener()
