"""Task failure alerting.

Sentry is Airflow's own integration, switched on by configuration only
(``AIRFLOW__SENTRY__SENTRY_ON=True``, ``AIRFLOW__SENTRY__SENTRY_DSN``,
``AIRFLOW__SENTRY__ENVIRONMENT``); it tags dag, task and try. On top of it every task gets
``log_task_failure``: one structured JSON log line per failure with the run's coordinates and
the pipeline's own context (file name, batch, window...) registered while the task works, then
the pipeline's channels (e-mail, Slack webhook: ``etlkit.common.notify``) when it has any.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("etlkit.alerts")

_pipeline_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("etlkit_alert_context")


_CONTEXT_ATTRIBUTE = "etlkit_alert_context"


# A lost worker leaves no exception to carry the context, and its alert is made by the dag-processor.
# So the context of a running try is also kept in a Variable named after the try (not an XCom: a
# retry clears the try's XComs when it starts, which can be before that alert is made); the
# outermost block removes it when it ends, and the lost try's alert when it has read it.
KEPT_CONTEXT_STATE_PREFIX = "etlkit_alert_context"


def context_variable(ti: Any) -> str:
    """``etlkit_alert_context.<dag>.<task>.<map index>.<try>.<run>``, in the characters a key may
    hold: one per try, as the retry may start before the lost try's alert reads it."""
    name = f"{KEPT_CONTEXT_STATE_PREFIX}.{ti.dag_id}.{ti.task_id}.{ti.map_index}.{ti.try_number}.{ti.run_id}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:250]


def _running_ti() -> Any:
    try:
        from airflow.sdk import get_current_context

        return get_current_context()["ti"]
    except Exception:  # not inside a running task (unit tests, scripts)
        return None


def _keep(ti: Any, context: dict[str, Any]) -> None:
    """Keep ``context`` for the alert of a lost worker, or forget it (empty: the try left every block)."""
    if ti is None:
        return
    from airflow.sdk import Variable

    try:
        if context:
            kept = {"try_number": ti.try_number, "context": context}
            Variable.set(context_variable(ti), json.dumps(kept, default=str), description=_KEPT_DESCRIPTION)
        else:
            Variable.delete(context_variable(ti))
    except Exception:  # the alert context must never fail the task
        log.debug("could not keep the alert context", exc_info=True)


_KEPT_DESCRIPTION = (
    "etlkit: what a running try works on, for the alert if its worker is lost; removed when it ends"
)


@contextmanager
def alert_context(**values: Any) -> Iterator[None]:
    """Attach ``values`` to any failure alert raised inside the block.

    An exception leaving the block carries the context with it (the innermost block's, the most
    detailed), because the failure callback runs after the task body has unwound every block. The
    current context is also kept for the alert of a lost worker (``context_variable``).
    """
    outer, ti = _pipeline_context.get({}), _running_ti()
    token = _pipeline_context.set({**outer, **values})
    _keep(ti, _pipeline_context.get())
    try:
        yield
    except BaseException as exc:
        if not hasattr(exc, _CONTEXT_ATTRIBUTE):
            setattr(exc, _CONTEXT_ATTRIBUTE, dict(_pipeline_context.get()))
        raise
    finally:
        _pipeline_context.reset(token)
        _keep(ti, outer)


def current_alert_context() -> dict[str, Any]:
    return dict(_pipeline_context.get({}))


def _context_of(exception: BaseException | None) -> dict[str, Any]:
    """The context the exception, or one it was raised from, left its block with."""
    seen: set[int] = set()
    while exception is not None and id(exception) not in seen:
        seen.add(id(exception))
        if hasattr(exception, _CONTEXT_ATTRIBUTE):
            return dict(getattr(exception, _CONTEXT_ATTRIBUTE))
        exception = exception.__cause__ or exception.__context__
    return current_alert_context()


# A callback with no exception is run by the dag-processor for a try the scheduler closed itself:
# its worker was lost (killed, out of memory, host gone) or stopped heartbeating.
LOST_TRY = (
    "no exception reached Airflow: the worker running this try was lost or its heartbeat timed out "
    "(see the scheduler log for the task)"
)


def _outcome(ti: Any) -> str:
    """``up_for_retry`` while tries are left, else ``failed`` (one callback serves both events)."""
    state = str(getattr(ti, "state", "") or "").rsplit(".", 1)[-1].lower()
    if state in ("up_for_retry", "failed"):
        return state
    try_number, max_tries = getattr(ti, "try_number", None), getattr(ti, "max_tries", None)
    if isinstance(try_number, int) and isinstance(max_tries, int):
        return "up_for_retry" if try_number <= max_tries else "failed"
    return "failed"


def _variables_reachable() -> bool:
    """Inside a task or a dag-processor callback: Variables are reached through the supervisor."""
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:
        return False
    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


def _claim_lost_try(ti: Any) -> tuple[dict[str, Any], bool]:
    """(the context the lost try kept, whether this callback is the first for it).

    Airflow 3.3 calls back twice for one lost try (the heartbeat purge, then the executor's event),
    in the dag-processor: the first alerts and marks the kept Variable, the second finds the mark,
    removes the Variable and stays silent. A try that kept nothing leaves nothing to mark: each of
    its callbacks alerts (a try failed by the executor alone, e.g. while the broker was down, gets
    one callback, so a mark made for it would never be removed).
    """
    if not _variables_reachable():
        return current_alert_context(), True
    try:
        from airflow.sdk import Variable

        key = context_variable(ti)
        raw = Variable.get(key, default=None)
        kept = json.loads(raw) if raw else {}
        if not kept:  # the try kept nothing (or a callback without a second one, e.g. broker down)
            return current_alert_context(), True
        if kept.get("alerted"):
            Variable.delete(key)
            return dict(kept.get("context") or {}), False
        Variable.set(key, json.dumps({**kept, "alerted": True}, default=str), description=_KEPT_DESCRIPTION)
        return dict(kept.get("context") or {}), True
    except Exception:  # no Variable access: the alert still goes out
        log.debug("could not read the lost try's alert context", exc_info=True)
        return current_alert_context(), True


def _run_params(context: dict[str, Any]) -> dict[str, Any]:
    params = context.get("params") or {}
    try:
        return {str(k): params[k] for k in params}
    except Exception:  # a params object that cannot be read must not lose the alert
        return {}


def failure_record(context: dict[str, Any], lost_try_context: dict[str, Any] | None = None) -> dict[str, Any]:
    ti = context.get("ti") or context.get("task_instance")
    exception = context.get("exception")
    outcome = _outcome(ti)
    return {
        "event": f"task_{outcome}",
        "outcome": outcome,
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "map_index": getattr(ti, "map_index", None),
        "run_id": getattr(ti, "run_id", None) or context.get("run_id"),
        "try_number": getattr(ti, "try_number", None),
        "max_tries": getattr(ti, "max_tries", None),
        "hostname": getattr(ti, "hostname", None),
        "error_type": type(exception).__name__ if exception else "WorkerLost",
        "error": str(exception)[:2000] if exception else LOST_TRY,
        "params": _run_params(context),
        "pipeline_context": _context_of(exception)
        if exception or lost_try_context is None
        else lost_try_context,
    }


def tag_error_report(context: dict[str, Any] | None) -> None:
    """Name the run and the worker in the error report of Airflow's Sentry integration (it tags dag,
    task and try only); called while the failed task's Sentry scope is open (the retry policy)."""
    sentry = sys.modules.get("sentry_sdk")
    ti = (context or {}).get("ti")
    if sentry is None or ti is None:
        return
    try:
        sentry.set_tag("run_id", ti.run_id)
        sentry.set_tag("worker", getattr(ti, "hostname", None))
    except Exception:  # reporting must never change the failure's outcome
        log.debug("could not tag the error report", exc_info=True)


def log_task_failure(context: dict[str, Any]) -> None:
    """``on_failure_callback`` / ``on_retry_callback`` for every task of every pipeline."""
    ti = context.get("ti") or context.get("task_instance")
    kept = None
    if context.get("exception") is None and ti is not None:  # a lost try, alerted by the dag-processor
        kept, first = _claim_lost_try(ti)
        if not first:
            log.info("the loss of %s try %s is already alerted", getattr(ti, "task_id", None), ti.try_number)
            return
    record = failure_record(context, kept)
    log.error("ETL_ALERT %s", json.dumps(record, default=str, sort_keys=True))
    from etlkit.common.notify import notify_failure  # lazily: the log line needs none of it

    try:
        notify_failure(record, context)
    except Exception:  # a channel must never change the failure's outcome
        log.exception("ETL_ALERT_CHANNEL could not send the alert")
