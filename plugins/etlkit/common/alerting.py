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


@contextmanager
def alert_context(**values: Any) -> Iterator[None]:
    """Attach ``values`` to any failure alert raised inside the block.

    An exception leaving the block carries the context with it (the innermost block's, the most
    detailed), because the failure callback runs after the task body has unwound every block.
    """
    token = _pipeline_context.set({**_pipeline_context.get({}), **values})
    try:
        yield
    except BaseException as exc:
        if not hasattr(exc, _CONTEXT_ATTRIBUTE):
            setattr(exc, _CONTEXT_ATTRIBUTE, dict(_pipeline_context.get()))
        raise
    finally:
        _pipeline_context.reset(token)


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


def failure_record(context: dict[str, Any]) -> dict[str, Any]:
    ti = context.get("ti") or context.get("task_instance")
    exception = context.get("exception")
    return {
        "event": "task_failed",
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "map_index": getattr(ti, "map_index", None),
        "run_id": getattr(ti, "run_id", None) or context.get("run_id"),
        "try_number": getattr(ti, "try_number", None),
        "error_type": type(exception).__name__ if exception else None,
        "error": str(exception)[:2000] if exception else None,
        "pipeline_context": _context_of(exception),
    }


def log_task_failure(context: dict[str, Any]) -> None:
    """``on_failure_callback`` / ``on_retry_callback`` for every task of every pipeline."""
    log.error("ETL_ALERT %s", json.dumps(failure_record(context), default=str, sort_keys=True))
