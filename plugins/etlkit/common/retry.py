"""Explicit retry policy: what retries, what fails at once, and how long to wait.

Retry counts and delays are defaults in code, overridable at run time by the JSON Variable
``etl_retry_policy`` (``{"retries": 3, "retry_delay_s": 60, "backoff": 2.0,
"max_retry_delay_s": 1800}``, optionally per pipeline under ``{"pipelines": {"visits": {...}}}``).
The Variable is read by the worker when a task fails, never at DAG parse time. A task's
``retries`` equal the code default and bound every decision, so the Variable can lower the count,
not raise it; ``MAX_RETRIES`` caps any setting.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from typing import Any

from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy

from etlkit.common.errors import BadInputError, TransientError

log = logging.getLogger(__name__)

RETRY_VARIABLE = "etl_retry_policy"
MAX_RETRIES = 5


@dataclass(frozen=True)
class RetrySettings:
    retries: int = 3
    retry_delay_s: float = 60.0
    backoff: float = 2.0
    max_retry_delay_s: float = 1800.0

    def delay_for(self, try_number: int) -> timedelta:
        """Exponential backoff: ``retry_delay_s * backoff ** (try_number - 1)``, capped."""
        seconds = self.retry_delay_s * self.backoff ** max(try_number - 1, 0)
        return timedelta(seconds=min(seconds, self.max_retry_delay_s))

    @classmethod
    def from_overrides(
        cls, overrides: dict[str, Any], pipeline: str | None = None, base: RetrySettings | None = None
    ) -> RetrySettings:
        known = {f.name for f in fields(cls)}
        merged = {k: v for k, v in overrides.items() if k != "pipelines"}
        merged.update((overrides.get("pipelines") or {}).get(pipeline or "", {}))
        unknown = set(merged) - known
        if unknown:
            raise ValueError(f"{RETRY_VARIABLE}: unknown keys {sorted(unknown)}")
        settings = replace(base or cls(), **merged)
        if settings.retries > MAX_RETRIES:
            log.warning("%s asks for %s retries; capped at %s", RETRY_VARIABLE, settings.retries, MAX_RETRIES)
            settings = replace(settings, retries=MAX_RETRIES)
        return settings


def _read_overrides() -> dict[str, Any]:
    try:
        from airflow.sdk import Variable

        raw = Variable.get(RETRY_VARIABLE, default=None)
    except Exception:  # outside a task only the env form is visible
        raw = os.environ.get(f"AIRFLOW_VAR_{RETRY_VARIABLE.upper()}")
    if not raw:
        return {}
    return raw if isinstance(raw, dict) else json.loads(raw)


def transient_exception_types() -> tuple[type[BaseException], ...]:
    """Network, timeout, 5xx/429 and lock-timeout errors of every client the pipelines use."""
    types: list[type[BaseException]] = [
        TransientError,
        ConnectionError,
        TimeoutError,
        socket.timeout,
        EOFError,
    ]
    try:
        import psycopg

        types += [psycopg.OperationalError, psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected]
    except ImportError:
        pass
    try:
        import paramiko

        types += [paramiko.SSHException]
    except ImportError:
        pass
    try:
        import requests

        # ChunkedEncodingError: the connection dropped in the middle of a response body.
        types += [requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError]
    except ImportError:
        pass
    return tuple(types)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, transient_exception_types()) and not isinstance(exc, BadInputError)


class PipelineRetryPolicy(RetryPolicy):
    """Bad input fails at once; transient errors retry with backoff; anything else: default."""

    def __init__(self, pipeline: str, **defaults: Any):
        self.pipeline = pipeline
        self.defaults = defaults
        RetrySettings(**defaults)  # fail at parse time on a typo

    def evaluate(self, exception, try_number, max_tries, context=None):
        if isinstance(exception, BadInputError):
            return RetryDecision.fail(reason=f"bad input, not retried: {exception}")
        settings = RetrySettings.from_overrides(
            _read_overrides(), self.pipeline, base=RetrySettings(**self.defaults)
        )
        if try_number > settings.retries:
            return RetryDecision.fail(reason=f"retries exhausted ({settings.retries}, {RETRY_VARIABLE})")
        kind = "transient" if is_transient(exception) else "unexpected"
        return RetryDecision.retry(
            delay=settings.delay_for(try_number),
            reason=f"{kind} {type(exception).__name__}, try {try_number} of {settings.retries + 1}",
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
