"""Task failure alerting.

Sentry is Airflow's own integration, switched on by configuration only
(``AIRFLOW__SENTRY__SENTRY_ON=True``, ``AIRFLOW__SENTRY__SENTRY_DSN``,
``AIRFLOW__SENTRY__ENVIRONMENT``); it tags dag, task and try. On top of it every task gets
``log_task_failure``: one structured JSON log line per failure with the run's coordinates and
the pipeline's own context (file name, batch, window...) registered while the task works.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("etlkit.alerts")

_pipeline_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("etlkit_alert_context")


_CONTEXT_ATTRIBUTE = "etlkit_alert_context"


# The context is also kept as this XCom of the running try: when its worker is lost, no exception
# carries it, and the alert is made by the dag-processor, which reads it back from there.
CONTEXT_XCOM_KEY = "etlkit_alert_context"


def _publish(context: dict[str, Any]) -> None:
    try:
        from airflow.sdk import get_current_context

        ti = get_current_context()["ti"]
    except Exception:  # not inside a running task (unit tests, scripts, dag.test's own code)
        return
    try:
        ti.xcom_push(CONTEXT_XCOM_KEY, context)
    except Exception:  # the alert context must never fail the task
        log.debug("could not keep the alert context as an XCom", exc_info=True)


@contextmanager
def alert_context(**values: Any) -> Iterator[None]:
    """Attach ``values`` to any failure alert raised inside the block.

    An exception leaving the block carries the context with it (the innermost block's, the most
    detailed), because the failure callback runs after the task body has unwound every block. The
    current context is also published for the alert of a lost worker (``CONTEXT_XCOM_KEY``).
    """
    outer = _pipeline_context.get({})
    token = _pipeline_context.set({**outer, **values})
    _publish(_pipeline_context.get())
    try:
        yield
    except BaseException as exc:
        if not hasattr(exc, _CONTEXT_ATTRIBUTE):
            setattr(exc, _CONTEXT_ATTRIBUTE, dict(_pipeline_context.get()))
        raise
    finally:
        _pipeline_context.reset(token)
        _publish(outer)


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


def _lost_try_context(ti: Any) -> dict[str, Any]:
    """What the lost try published last (see ``alert_context``), read back by the dag-processor."""
    try:
        kept = ti.xcom_pull(task_ids=ti.task_id, key=CONTEXT_XCOM_KEY, map_indexes=ti.map_index)
    except Exception:  # no XCom access here (a unit test's bare object): the alert still goes out
        log.debug("could not read the lost try's alert context", exc_info=True)
        kept = None
    return dict(kept) if isinstance(kept, dict) else current_alert_context()


def _run_params(context: dict[str, Any]) -> dict[str, Any]:
    params = context.get("params") or {}
    try:
        return {str(k): params[k] for k in params}
    except Exception:  # a params object that cannot be read must not lose the alert
        return {}


def failure_record(context: dict[str, Any]) -> dict[str, Any]:
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
        "pipeline_context": _context_of(exception) if exception else _lost_try_context(ti),
    }


def log_task_failure(context: dict[str, Any]) -> None:
    """``on_failure_callback`` / ``on_retry_callback`` for every task of every pipeline."""
    log.error("ETL_ALERT %s", json.dumps(failure_record(context), default=str, sort_keys=True))
