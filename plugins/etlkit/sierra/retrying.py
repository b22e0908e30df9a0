"""Bounded retries with exponential backoff and jitter, and which errors deserve them."""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from etlkit.common.retry import is_transient

log = logging.getLogger(__name__)

T = TypeVar("T")

# SQLSTATEs worth a new transaction: serialization failure, deadlock, admin shutdown, starting up.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "57P01", "57P03"})


class BackendHttpError(Exception):
    """A non-2xx answer from the backend, with its real status code (HttpHook hides it in a string)."""

    def __init__(self, operation: str, status: int, detail: str, retry_after: float | None = None):
        super().__init__(f"{operation} answered HTTP {status}: {detail}")
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status >= 500 or self.status == 429


class RetriesExhausted(Exception):
    pass


def is_retryable_http_error(exc: BaseException) -> bool:
    """5xx, 429, timeouts and connection errors; never another 4xx or a bad body."""
    if isinstance(exc, BackendHttpError):
        return exc.retryable
    return is_transient(exc)


# Connect-time refusals that no retry can fix. psycopg reports connect errors without a SQLSTATE,
# so the server's FATAL message is all there is; retrying them would also hammer a lockout policy.
PERMANENT_CONNECT_FAILURES = re.compile(
    r"FATAL:\s+(?:password authentication failed|database .* does not exist|role .* does not exist"
    r"|no pg_hba\.conf entry|permission denied|role .* is not permitted to log in"
    r"|.*authentication failed)",
    re.IGNORECASE,
)


def is_retryable_db_error(exc: BaseException) -> bool:
    """Connection failures (class 08, or no server answer at all) and the SQLSTATEs above;
    never a connection the server refused for credentials, a missing database or a missing role."""
    import psycopg

    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:
        return isinstance(exc, psycopg.OperationalError) and not PERMANENT_CONNECT_FAILURES.search(str(exc))
    return state.startswith("08") or state in RETRYABLE_SQLSTATES


@dataclass(frozen=True)
class Backoff:
    attempts: int
    base_seconds: float
    max_seconds: float
    jitter: float = 0.2

    def delay(self, failed_attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
            return min(retry_after, self.max_seconds)
        nominal = self.base_seconds * 2 ** (failed_attempt - 1)
        return min(nominal * random.uniform(1 - self.jitter, 1 + self.jitter), self.max_seconds)


def call_with_retries(
    operation: Callable[[], T],
    *,
    what: str,
    backoff: Backoff,
    retryable: Callable[[BaseException], bool],
    before_retry: Callable[[], Any] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """Run ``operation`` up to ``backoff.attempts`` times.

    A non-retryable error propagates at once. ``before_retry`` runs after each wait; a result
    other than None ends the loop with that result (used to detect a POST that did commit).
    """
    for attempt in range(1, backoff.attempts + 1):
        try:
            return operation()
        except Exception as exc:
            if not retryable(exc):
                raise
            if attempt == backoff.attempts:
                raise RetriesExhausted(f"{what} failed after {attempt} attempts: {exc}") from exc
            delay = backoff.delay(attempt, getattr(exc, "retry_after", None))
            log.warning(
                "%s failed (attempt %s of %s): %s; retrying in %.2fs",
                what,
                attempt,
                backoff.attempts,
                exc,
                delay,
            )
            (sleep or time.sleep)(delay)
            if before_retry is not None and (result := before_retry()) is not None:
                return result
    raise AssertionError("unreachable: the loop returns or raises")
