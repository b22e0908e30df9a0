"""Explicit retry policy: what retries, what fails at once, and how long to wait.

One classification for every pipeline (``explain`` / ``classify`` / ``is_transient``), also used by
the hooks' own retry loops. Transient, retried with backoff: network errors, timeouts (PostgreSQL
statement and lock timeouts included), HTTP 5xx/408/429, serialization failures, deadlocks, refused
connections, server shutdowns and restarts, ``TransientError``. Permanent, failed at once with the
remedy in the reason: authentication, privileges, missing objects, other SQL and data errors, HTTP
401/403/404/400, ``PermanentError`` (``BadInputError``, ``ConfigurationError``, ``ContractError``),
missing Airflow connections/Variables, and anything unclassified (a plain bug is not retried).

Retry counts and delays are defaults in code, overridable at run time by the JSON Variable
``etl_retry_policy`` (``{"retries": 3, "retry_delay_s": 60, "backoff": 2.0,
"max_retry_delay_s": 1800}``, optionally per pipeline under ``{"pipelines": {"visits": {...}}}``).
The Variable is read by the worker when a task fails, and by the scheduler when it fails a try
itself (a lost worker: ``ClosedTryRetryListener``), never at DAG parse time. The Airflow side (task
retry policies, ``retry_default_args``, the scheduler listener) is ``etlkit.common.retry_policy``;
this module imports no Airflow, so the pipelines' domain packages can use it. A task's
``retries`` equal the code default and bound every decision, so the Variable can lower the count,
not raise it; ``MAX_RETRIES`` caps any setting.
"""

from __future__ import annotations

import errno
import importlib
import logging
import math
import random
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from typing import Any, Literal, TypeVar

from etlkit.common.errors import InjectedFault, PermanentError, TransientError

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


# ---- classification: one rule for every pipeline --------------------------------------------------

TRANSIENT = "transient"
PERMANENT = "permanent"
Kind = Literal["transient", "permanent"]

_DETAIL_LIMIT = 200
_URL_CREDENTIALS = re.compile(r"(//)[^/@\s:]+:[^/@\s]*@")
_SECRET_PAIRS = re.compile(r"(?i)\b(password|passwd|pwd|api[_-]?key|token|secret)=\S+")


@dataclass(frozen=True)
class Verdict:
    """What a failure is, why, and what to do about it."""

    kind: Kind
    cause: str
    remedy: str
    exception: BaseException  # the link of the exception chain that decided

    @property
    def reason(self) -> str:
        if self.kind == TRANSIENT:
            return f"transient: {self.cause} — {self.remedy}"
        return f"permanent: {self.cause} — {self.remedy}; not retried"


def _detail(exc: BaseException) -> str:
    """The exception's first line, cut short, with URL credentials and ``key=value`` secrets removed."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = _SECRET_PAIRS.sub(r"\1=***", _URL_CREDENTIALS.sub(r"\1***@", text))
    return text[:_DETAIL_LIMIT]


def _transient(exc: BaseException, cause: str, remedy: str = "retried with backoff") -> Verdict:
    return Verdict(TRANSIENT, cause, remedy, exc)


def _permanent(exc: BaseException, cause: str, remedy: str) -> Verdict:
    return Verdict(PERMANENT, cause, remedy, exc)


def _module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# ---- HTTP statuses, however a client surfaces them


def _http(exc: BaseException, status: int, system: str) -> Verdict:
    what = f"{system} answered HTTP {status} ({_detail(exc)})"
    if status >= 500 or status in (408, 429):
        return _transient(exc, what)
    if status == 401:
        return _permanent(
            exc, what, "the credentials were refused: fix the connection's login/password or token"
        )
    if status == 403:
        return _permanent(exc, what, "the account lacks a privilege: grant it, or use an account that has it")
    if status == 404:
        return _permanent(exc, what, "the object or endpoint does not exist: fix its name or create it")
    return _permanent(
        exc, what, "the request is refused the same way on every try: fix the request or configuration"
    )


_AIRFLOW_HTTP_MESSAGE = re.compile(
    r"^(\d{3}):"
)  # HttpHook.check_response: AirflowException("503:Service ...")


def _own(exc: BaseException) -> Verdict | None:
    if isinstance(exc, PermanentError):
        return _permanent(exc, _detail(exc), "fix the input or configuration named above")
    if isinstance(exc, TransientError):
        return _transient(exc, _detail(exc))
    if isinstance(exc, InjectedFault):
        return _transient(exc, f"simulated crash ({_detail(exc)})")
    return None


def _airflow(exc: BaseException) -> Verdict | None:
    exceptions = _module("airflow.sdk.exceptions")
    if exceptions is None:
        return None
    if isinstance(exc, exceptions.AirflowNotFoundException):
        return _permanent(
            exc, _detail(exc), "define the connection or Variable (environment, secrets backend or UI)"
        )
    if isinstance(exc, exceptions.AirflowSecretsBackendAccessDenied):
        return _permanent(exc, _detail(exc), "grant the worker access to the secret in the secrets backend")
    if isinstance(exc, exceptions.AirflowTaskTimeout):
        return _transient(exc, f"execution_timeout reached ({_detail(exc)})")
    if isinstance(exc, exceptions.AirflowRuntimeError):
        error = getattr(getattr(exc, "error", None), "error", None)
        name = getattr(error, "value", str(error))
        if name.endswith("_NOT_FOUND"):
            return _permanent(exc, _detail(exc), "define the missing connection, Variable or object")
        if name == "PERMISSION_DENIED":
            return _permanent(exc, _detail(exc), "grant the task access to it")
        if name == "API_SERVER_ERROR":
            return _transient(exc, f"the Airflow API server failed ({_detail(exc)})")
        return None
    if type(exc) is exceptions.AirflowException and (match := _AIRFLOW_HTTP_MESSAGE.match(str(exc))):
        return _http(exc, int(match.group(1)), "the HTTP server")
    return None


# ---- PostgreSQL (psycopg 3)

_PG_TRANSIENT_STATES = {
    "40001": "serialization failure",
    "40P01": "deadlock detected",
    "40003": "statement completion unknown",
    "55P03": "lock timeout (lock not available)",
    "57014": "statement timeout or cancelled statement",
    "57P01": "administrator shutdown of the connection",
    "57P02": "crash shutdown of the server",
    "57P03": "the server cannot accept connections now",
    "25P03": "idle-in-transaction timeout",
    "25P04": "transaction timeout",
}
_PG_LOGIN_REFUSED = re.compile(
    r"password authentication failed|authentication failed|no pg_hba\.conf entry|role \S+ does not exist"
    r"|is not permitted to log in|no password supplied|password is required|fe_sendauth",
    re.IGNORECASE,
)
_PG_DATABASE_MISSING = re.compile(r'database "[^"]*" does not exist', re.IGNORECASE)
_PG_CONNECT_DENIED = re.compile(r"permission denied for database", re.IGNORECASE)
_PG_BAD_SETTINGS = re.compile(
    r"server does not support SSL|SSL .*required|certificate verify failed|invalid connection option"
    r"|invalid sslmode|invalid port|invalid integer value",
    re.IGNORECASE,
)


def _pg_target(exc: BaseException) -> str:
    """``user 'x' at host:port/db`` from the failed connection (never its password)."""
    pgconn = getattr(exc, "pgconn", None)
    try:
        parts = [getattr(pgconn, name, b"") or b"" for name in ("user", "host", "port", "db")]
        user, host, port, db = (part.decode(errors="replace") for part in parts)
    except (AttributeError, TypeError):
        return "PostgreSQL"
    if not (user or host):
        return "PostgreSQL"
    return f"PostgreSQL user '{user}' at {host}:{port}/{db}"


def _psycopg(exc: BaseException) -> Verdict | None:
    psycopg = _module("psycopg")
    if psycopg is None or not isinstance(exc, psycopg.Error):
        return None
    state = getattr(exc, "sqlstate", None)
    if state:
        return _pg_by_sqlstate(exc, state)
    target, message = _pg_target(exc), str(exc)
    if isinstance(exc, psycopg.OperationalError):
        # Connect-time refusals carry no SQLSTATE (libpq exposes none): the server's message decides.
        if _PG_LOGIN_REFUSED.search(message):
            return _permanent(
                exc,
                f"authentication failed for the {target} ({_detail(exc)})",
                "fix the connection's login/password (or the server's pg_hba.conf)",
            )
        if _PG_DATABASE_MISSING.search(message):
            return _permanent(
                exc, f"{target}: {_detail(exc)}", "fix the database name of the connection, or create it"
            )
        if _PG_CONNECT_DENIED.search(message):
            return _permanent(exc, f"{target}: {_detail(exc)}", "GRANT CONNECT on the database to the user")
        if _PG_BAD_SETTINGS.search(message):
            return _permanent(
                exc, f"{target}: {_detail(exc)}", "fix the connection's settings (host, port, sslmode)"
            )
        return _transient(exc, f"the connection to {target} failed or was lost ({_detail(exc)})")
    return _permanent(exc, f"{target}: {type(exc).__name__}: {_detail(exc)}", "fix the SQL or the data")


def _pg_by_sqlstate(exc: BaseException, state: str) -> Verdict:
    target, detail = _pg_target(exc), _detail(exc)
    if state in _PG_TRANSIENT_STATES:
        return _transient(exc, f"{_PG_TRANSIENT_STATES[state]} on {target} ({state}: {detail})")
    if state.startswith("08"):
        return _transient(exc, f"the connection to {target} failed or was lost ({state}: {detail})")
    if state.startswith("53"):
        return _transient(exc, f"{target} is short of resources ({state}: {detail})")
    what = f"{target}: {state}: {detail}"
    if state.startswith("28"):
        return _permanent(
            exc,
            f"authentication failed for the {what}",
            "fix the connection's login/password (or pg_hba.conf)",
        )
    if state == "42501":
        return _permanent(
            exc, f"insufficient privilege, {what}", "GRANT the privilege to the connection's user"
        )
    if state in ("42P01", "42703", "42883", "42704", "3F000", "3D000", "42P02"):
        return _permanent(
            exc, f"missing object, {what}", "create the object, or fix its name in the configuration"
        )
    if state.startswith(("22", "23")):
        return _permanent(
            exc, f"the data was rejected, {what}", "fix the input data (or the target's definition)"
        )
    return _permanent(exc, what, "fix the SQL, the schema or the server settings")


# ---- SSH (paramiko)


def _paramiko(exc: BaseException) -> Verdict | None:
    paramiko = _module("paramiko")
    if paramiko is None:
        return None
    if isinstance(exc, paramiko.BadHostKeyException):
        return _permanent(
            exc,
            f"the SSH server's host key does not match the pinned one ({_detail(exc)})",
            "check the server's key out of band, then update the connection's host_key",
        )
    if isinstance(exc, paramiko.PasswordRequiredException):
        return _permanent(
            exc, f"the SSH private key is encrypted ({_detail(exc)})", "give the key's passphrase"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        if "timeout" in str(exc).lower():
            return _transient(exc, f"SSH authentication timed out ({_detail(exc)})")
        return _permanent(
            exc,
            f"the SSH server refused the credentials ({_detail(exc)})",
            "fix the connection's login and key_file/private_key or password",
        )
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return _transient(exc, f"SSH connection refused ({_detail(exc)})")
    if isinstance(exc, paramiko.SSHException):
        text = str(exc).lower()
        if "private key" in text or "not a valid" in text or "incompatible ssh peer" in text:
            return _permanent(
                exc, f"SSH configuration: {_detail(exc)}", "fix the connection's key or host_key"
            )
        return _transient(exc, f"the SSH session failed or dropped ({_detail(exc)})")
    return None


# ---- Elasticsearch client (elasticsearch-py / elastic_transport)


def _elasticsearch(exc: BaseException) -> Verdict | None:
    transport = _module("elastic_transport")
    elasticsearch = _module("elasticsearch")
    if elasticsearch is not None and isinstance(exc, elasticsearch.ApiError):
        if isinstance(exc, elasticsearch.UnsupportedProductError):
            return _permanent(exc, _detail(exc), "point the connection at an Elasticsearch server")
        status = getattr(getattr(exc, "meta", None), "status", None)
        if isinstance(status, int):
            return _http(exc, status, "Elasticsearch")
    if transport is None:
        return None
    if isinstance(exc, transport.TlsError):
        if "certificate verify failed" in str(exc).lower():
            return _permanent(exc, f"TLS: {_detail(exc)}", "fix the connection's ca_certs / verify_certs")
        return _transient(exc, f"TLS connection to Elasticsearch failed ({_detail(exc)})")
    if isinstance(exc, transport.ConnectionTimeout):
        return _transient(exc, f"Elasticsearch timed out ({_detail(exc)})")
    if isinstance(exc, transport.ConnectionError):
        return _transient(exc, f"Elasticsearch unreachable ({_detail(exc)})")
    if isinstance(exc, transport.SerializationError):
        return _permanent(
            exc,
            f"Elasticsearch answer or request not serializable ({_detail(exc)})",
            "a contract violation: fix the data or the client",
        )
    return None


# ---- requests / urllib3


def _requests(exc: BaseException) -> Verdict | None:
    requests = _module("requests")
    if requests is None or not isinstance(exc, requests.RequestException):
        return _urllib3(exc)
    errors = requests.exceptions
    if isinstance(exc, errors.SSLError):
        if "certificate verify failed" in str(exc).lower():
            return _permanent(
                exc, f"TLS: {_detail(exc)}", "fix the connection's CA bundle / verification settings"
            )
        return _transient(exc, f"TLS connection failed ({_detail(exc)})")
    if isinstance(exc, errors.HTTPError) and getattr(exc, "response", None) is not None:
        return _http(exc, exc.response.status_code, "the HTTP server")
    if isinstance(
        exc, (errors.ConnectionError, errors.Timeout, errors.ChunkedEncodingError, errors.RetryError)
    ):
        return _transient(exc, f"network error or timeout ({type(exc).__name__}: {_detail(exc)})")
    if isinstance(exc, errors.InvalidJSONError):
        return _permanent(
            exc, f"the answer is not valid JSON ({_detail(exc)})", "a contract violation by the server"
        )
    if isinstance(exc, (errors.InvalidURL, errors.MissingSchema, errors.InvalidSchema, errors.InvalidHeader)):
        return _permanent(exc, _detail(exc), "fix the connection's host/URL")
    if isinstance(exc, errors.TooManyRedirects):
        return _permanent(exc, _detail(exc), "fix the URL")
    return None


def _urllib3(exc: BaseException) -> Verdict | None:
    urllib3 = _module("urllib3")
    if urllib3 is None:
        return None
    errors = urllib3.exceptions
    if isinstance(exc, errors.MaxRetryError) and isinstance(exc.reason, BaseException):
        return _decide(exc.reason)
    if isinstance(exc, (errors.TimeoutError, errors.ProtocolError, errors.NewConnectionError)):
        return _transient(exc, f"network error or timeout ({type(exc).__name__}: {_detail(exc)})")
    return None


# ---- an HTTP status a hook put on its own exception (e.g. Sierra's BackendHttpError.status)


def _status_attribute(exc: BaseException) -> Verdict | None:
    status = vars(exc).get("status") if hasattr(exc, "__dict__") else None
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        return _http(exc, status, "the HTTP server")
    return None


# ---- the standard library

_NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ETIMEDOUT,
        errno.EPIPE,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
    }
)
_DEFECTS = (
    TypeError,
    AttributeError,
    NameError,
    LookupError,
    AssertionError,
    ArithmeticError,
    NotImplementedError,
    RecursionError,
    ImportError,
    SyntaxError,
)


def _builtin(exc: BaseException) -> Verdict | None:
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror, EOFError)) or (
        isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS
    ):
        return _transient(exc, f"network error or timeout ({type(exc).__name__}: {_detail(exc)})")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _permanent(exc, f"TLS: {_detail(exc)}", "fix the CA bundle / certificate settings")
    if isinstance(exc, FileNotFoundError):
        return _permanent(
            exc, f"missing file or directory ({_detail(exc)})", "create it or fix the configured path"
        )
    if isinstance(exc, PermissionError):
        return _permanent(exc, f"permission denied ({_detail(exc)})", "grant the account access to it")
    if isinstance(exc, ValueError):
        return _permanent(
            exc, f"invalid value ({type(exc).__name__}: {_detail(exc)})", "fix the input, or the code"
        )
    if isinstance(exc, _DEFECTS):
        return _permanent(
            exc, f"a defect ({type(exc).__name__}: {_detail(exc)})", "fix the code, then clear the task"
        )
    return None


_RULES = (_own, _airflow, _psycopg, _paramiko, _elasticsearch, _requests, _status_attribute, _builtin)


def _decide(exc: BaseException) -> Verdict | None:
    for rule in _RULES:
        try:
            verdict = rule(exc)
        except Exception:  # a rule must never break the decision; the next one may still know
            log.debug("retry classification rule %s failed on %r", rule.__name__, type(exc), exc_info=True)
            continue
        if verdict is not None:
            return verdict
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, then what it was raised from (``__cause__``) or while handling (``__context__``)."""
    links: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in links) and len(links) < 20:
        links.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return links


def explain(exc: BaseException) -> Verdict:
    """Transient or permanent, with the cause and the remedy.

    The outermost link of the chain that a rule recognises decides: a ``ConfigurationError`` raised
    from a paramiko error is permanent, an ``AirflowException`` wrapping a requests timeout is
    transient. Nothing recognised anywhere (a plain bug, an unknown library error) is permanent.
    """
    for link in _chain(exc):
        verdict = _decide(link)
        if verdict is not None:
            return verdict
    return _permanent(
        exc,
        f"unclassified {type(exc).__name__} ({_detail(exc)})",
        "not known to be transient: fix the cause, then clear the task "
        "(a transient cause belongs in etlkit.common.retry)",
    )


def classify(exc: BaseException) -> Kind:
    """``"transient"`` (retry with backoff) or ``"permanent"`` (fail at once)."""
    return explain(exc).kind


def is_transient(exc: BaseException) -> bool:
    return classify(exc) == TRANSIENT


# ---- in-task retries: the one backoff every hook and loop uses

T = TypeVar("T")


class RetriesExhausted(Exception):
    """Every in-task attempt of a transient failure failed; the task's own retries come next."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, capped; a usable ``Retry-After`` wins (capped too)."""

    attempts: int
    base_seconds: float
    max_seconds: float
    jitter: float = 0.2

    def delay(self, failed_attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
            return min(retry_after, self.max_seconds)
        nominal = self.base_seconds * 2 ** (failed_attempt - 1)
        return min(nominal * random.uniform(1 - self.jitter, 1 + self.jitter), self.max_seconds)

    def longest_waits(self) -> float:
        """The most all the waits between ``attempts`` tries can add up to (for time budgets)."""
        return sum(
            min(self.base_seconds * 2 ** (attempt - 1) * (1 + self.jitter), self.max_seconds)
            for attempt in range(1, self.attempts)
        )


def call_with_retries(
    operation: Callable[[], T],
    *,
    what: str,
    backoff: Backoff,
    retryable: Callable[[BaseException], bool] = is_transient,
    before_retry: Callable[[], Any] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """Run ``operation`` up to ``backoff.attempts`` times, waiting ``backoff.delay`` between tries.

    A permanent error propagates at once. ``before_retry`` runs after each wait; a result other than
    None ends the loop with that result (used to detect a POST that did commit).
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
