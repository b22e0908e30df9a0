"""Ender Turing REST API client on an Airflow connection (spec §1).

Not ``HttpHook``: that one sends every unknown connection extra as an HTTP header. Connection
``enderturing_default``: host (scheme optional, https by default), login (e-mail), password; extras
``verify_ssl`` (default true), ``ca_bundle``, ``timeout_s`` (120), ``token`` (static token),
``detail_concurrency`` (4: per-session calls in parallel) and the retry settings ``max_attempts`` (6),
``backoff_base_s`` (2), ``backoff_max_s`` (60), ``retry_after_max_s`` (300). Secrets go only into the
login form body and the Authorization header, never into logs or URLs. The connection is read at
first use, not when the hook is built; ``test_connection`` serves the UI's Test button.

A 429 (or a 503 with ``Retry-After``) pauses every call of the hook, not only the one that got it:
the threads share one gate, so a rate-limited tenant sees one pause instead of a storm of 429s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import requests
from airflow.sdk import BaseHook
from requests.adapters import HTTPAdapter

from etlkit.common.errors import ConfigurationError, TransientError
from etlkit.common.http import retry_after_seconds
from etlkit.common.retry import Backoff
from etlkit.enderturing.errors import EnderTuringLoginError, EnderTuringRequestError

log = logging.getLogger(__name__)

REFRESH_MARGIN_S = 60
CONNECT_TIMEOUT_S = 10
# Per-session calls in parallel (connection extra detail_concurrency). 4 stays below the rate limits
# API vendors commonly set per tenant (tens of calls per second) at the latencies of a remote API;
# a higher value needs the tenant's limit: see docs/enderturing.md.
DEFAULT_DETAIL_CONCURRENCY = 4
MAX_DETAIL_CONCURRENCY = 64


class PauseGate:
    """One pause shared by every thread of a client: after a 429 no thread sends anything until the
    wait it asked for has passed, then all resume. Pauses only lengthen, never shorten."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resume_at = 0.0  # time.monotonic()
        self.pauses = 0  # pauses begun while the gate was open (not the ones that extend a pause)

    def pause(self, seconds: float) -> None:
        with self._lock:
            now = time.monotonic()
            if self._resume_at <= now:
                self.pauses += 1
            self._resume_at = max(self._resume_at, now + seconds)

    def wait(self) -> None:
        while True:
            with self._lock:
                remaining = self._resume_at - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(remaining)


@dataclass(frozen=True)
class RequestRetrySettings:
    """In-request retries of one API call (attempts, jittered backoff, Retry-After cap); the task-level
    policy is etlkit.common.retry."""

    max_attempts: int = 6
    backoff_base_s: float = 2.0
    backoff_max_s: float = 60.0
    retry_after_max_s: float = 300.0

    def backoff(self, attempt: int) -> float:
        return Backoff(self.max_attempts, self.backoff_base_s, self.backoff_max_s).delay(attempt)


@dataclass(frozen=True)
class _Token:
    header: str
    expires_at: float  # time.monotonic() based; inf for a static token


@dataclass(frozen=True)
class ConnectionSettings:
    """What the hook reads from its Airflow connection (module docstring), checked once."""

    base_url: str
    username: str | None
    password: str | None = field(repr=False)
    static_token: str | None = field(repr=False)
    timeout: tuple[float, float]
    retry: RequestRetrySettings
    detail_concurrency: int
    verify: bool | str

    @classmethod
    def of(cls, connection: Any, conn_id: str) -> ConnectionSettings:
        extra = connection.extra_dejson
        host = (connection.host or "").strip().rstrip("/")
        if not host:
            raise ConfigurationError(f"connection {conn_id!r} has no host")
        if "://" not in host:
            host = f"https://{host}"
        if connection.port and host.count(":") == 1:
            host = f"{host}:{connection.port}"
        static_token = extra.get("token")
        if not static_token and not (connection.login and connection.password):
            raise ConfigurationError(f"connection {conn_id!r} needs login and password, or extra token")
        retry_names = RequestRetrySettings.__dataclass_fields__
        return cls(
            base_url=f"{host}/api/v1",
            username=connection.login,
            password=connection.password,
            static_token=static_token,
            timeout=(CONNECT_TIMEOUT_S, float(extra.get("timeout_s", 120))),
            retry=RequestRetrySettings(**{name: float(extra[name]) for name in retry_names if name in extra}),
            detail_concurrency=_detail_concurrency(extra, conn_id),
            # Passed on every request: a session-level value loses to REQUESTS_CA_BUNDLE from the environment.
            verify=extra.get("ca_bundle") or _as_bool(extra.get("verify_ssl", True)),
        )


class EnderTuringHook(BaseHook):
    """The connection is read, and the HTTP session built, at first use (``get_conn``), not here."""

    conn_name_attr = "enderturing_conn_id"
    default_conn_name = "enderturing_default"
    conn_type = "http"
    hook_name = "Ender Turing"

    def __init__(self, enderturing_conn_id: str = default_conn_name):
        super().__init__()
        self.enderturing_conn_id = enderturing_conn_id
        self.pause_gate = PauseGate()
        self._settings: ConnectionSettings | None = None
        self._session: requests.Session | None = None
        self._setup_lock = threading.Lock()
        self._token: _Token | None = None
        self._login_lock = threading.Lock()
        self._login_rejection: EnderTuringLoginError | None = None  # credentials do not heal mid-task

    @property
    def conn_settings(self) -> ConnectionSettings:
        if self._settings is None:
            with self._setup_lock:
                if self._settings is None:
                    connection = self.get_connection(self.enderturing_conn_id)
                    self._settings = ConnectionSettings.of(connection, self.enderturing_conn_id)
                    if self._settings.verify is False:
                        log.warning(
                            "TLS certificate verification is OFF for connection %r", self.enderturing_conn_id
                        )
        return self._settings

    @property
    def detail_concurrency(self) -> int:
        return self.conn_settings.detail_concurrency

    def get_conn(self) -> requests.Session:
        if self._session is not None:
            return self._session
        settings = self.conn_settings
        with self._setup_lock:
            if self._session is None:
                session = requests.Session()
                # One pooled connection per worker thread (requests keeps 10: more would reconnect).
                adapter = HTTPAdapter(pool_maxsize=max(10, settings.detail_concurrency))
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                self._session = session
            return self._session

    def test_connection(self) -> tuple[bool, str]:
        """The UI's Test button: log in (unless a static token is set) and read one label, one
        attempt per call. The message names the problem, never a credential."""
        try:
            settings = self.conn_settings
            self._settings = replace(settings, retry=replace(settings.retry, max_attempts=1))
            try:
                self.request("GET", "/labels", "limit=1")
            finally:
                self._settings = settings
        except Exception as exc:  # the button shows any failure; our messages carry no secrets
            return False, f"{type(exc).__name__}: {exc}"
        return True, f"Ender Turing API at {self.conn_settings.base_url} answered an authenticated call"

    # ---- authentication --------------------------------------------------------------------

    def _current_token(self) -> _Token:
        if self.conn_settings.static_token:
            return _Token(f"Bearer {self.conn_settings.static_token}", float("inf"))
        with self._login_lock:
            token = self._token
            if token is None or time.monotonic() >= token.expires_at - REFRESH_MARGIN_S:
                token = self._token = self._login()
            return token

    def _relogin_after_401(self, used: _Token) -> _Token:
        """Only the first thread that saw the current token rejected logs in; the others reuse it."""
        if self.conn_settings.static_token:
            raise EnderTuringLoginError("static token rejected with 401", status=401)
        with self._login_lock:
            if self._token is used or self._token is None:
                self._token = self._login()
            return self._token

    def _login(self) -> _Token:
        if self._login_rejection is not None:
            rejection = self._login_rejection
            raise EnderTuringLoginError(str(rejection), status=rejection.status)
        response = self._send_with_retries(
            "POST",
            "/login/access-token",
            data={"username": self.conn_settings.username, "password": self.conn_settings.password},
        )
        if response.status_code in (400, 401, 403):
            self._login_rejection = EnderTuringLoginError(
                f"Ender Turing login rejected ({response.status_code}): check the credentials of "
                f"connection {self.enderturing_conn_id!r}",
                status=response.status_code,
            )
            raise self._login_rejection
        body = self._json(response, "POST", "/login/access-token")
        try:
            header = f"{body['token_type']} {body['access_token']}"
            expires_at = time.monotonic() + float(body["expires_in"])
        except (KeyError, TypeError, ValueError) as exc:
            raise EnderTuringRequestError(f"login response lacks token fields: {exc}") from None
        return _Token(header, expires_at)

    # ---- transport -------------------------------------------------------------------------

    def _send_with_retries(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Retry network errors, 429 and 5xx with backoff (``Retry-After`` honoured); return the rest."""
        settings, session = self.conn_settings, self.get_conn()
        url = f"{settings.base_url}{path}"
        for attempt in range(1, int(settings.retry.max_attempts) + 1):
            self.pause_gate.wait()
            try:
                response = session.request(
                    method, url, timeout=settings.timeout, verify=settings.verify, **kwargs
                )
            except requests.exceptions.SSLError as exc:
                raise ConfigurationError(
                    f"{method} {path}: TLS certificate verification failed ({exc}); set extra ca_bundle, "
                    "or verify_ssl false for development only"
                ) from None
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                problem, wait = f"{type(exc).__name__}", None
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response
                problem = f"HTTP {response.status_code}"
                wait = None
                if response.status_code in (429, 503):
                    wait = retry_after_seconds(response.headers.get("Retry-After"))
            if wait is not None and wait > settings.retry.retry_after_max_s:
                # Spec §1.3: fail rather than hold a worker slot; no status, so never a per-session failure.
                raise EnderTuringRequestError(
                    f"{method} {path}: {problem} asks to wait {wait:.0f}s, more than "
                    f"retry_after_max_s={settings.retry.retry_after_max_s:.0f}s"
                )
            if attempt == settings.retry.max_attempts:
                break
            delay = wait if wait is not None else settings.retry.backoff(attempt)
            log.warning("%s %s: %s, attempt %s; retrying in %.2fs", method, path, problem, attempt, delay)
            if problem == "HTTP 429" or wait is not None:
                self.pause_gate.pause(delay)  # the API asks the whole client to wait: every thread does
            else:
                time.sleep(delay)
        raise TransientError(f"{method} {path}: {problem} after {attempt} attempts")

    def _json(self, response: requests.Response, method: str, path: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise EnderTuringRequestError(
                f"{method} {path}: {response.status_code} response is not JSON (Content-Type "
                f"{response.headers.get('Content-Type')!r}, {len(response.content)} bytes; content not "
                "shown: personal data)",
                status=response.status_code,
            ) from None

    def request(self, method: str, path: str, query: str | None = None, *, missing_ok: bool = False) -> Any:
        """One authenticated call; ``query`` is an already-encoded query string (sent as is).

        With ``missing_ok`` a 404 returns ``None``; other 4xx raise ``EnderTuringRequestError``.
        """
        full_path = f"{path}?{query}" if query else path
        token = self._current_token()
        for refreshed in (False, True):
            response = self._send_with_retries(method, full_path, headers={"Authorization": token.header})
            if response.status_code != 401:
                break
            if refreshed:
                raise EnderTuringRequestError(f"{method} {path}: 401 again after a fresh login", status=401)
            log.info("%s %s: 401, logging in again once", method, path)
            token = self._relogin_after_401(token)
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            raise EnderTuringRequestError(
                f"{method} {path}: HTTP {response.status_code}: {response.content[:500].decode('utf-8', 'replace')}",
                status=response.status_code,
            )
        return self._json(response, method, path)

    # ---- endpoints -------------------------------------------------------------------------

    def get_dictionary(self, path: str, limit: int | None = None) -> list[dict]:
        body = self.request("GET", path, f"limit={limit}" if limit else None)
        items = body.get("items") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise EnderTuringRequestError(f"GET {path}: expected a list, got {type(body).__name__}")
        if limit is not None and len(items) == limit:
            log.warning("GET %s returned exactly limit=%s items: the result may be truncated", path, limit)
        return items

    def iter_session_pages(
        self, encoded_filters: str, page_size: int, max_items: int | None = None
    ) -> Iterator[tuple[int | None, list[dict]]]:
        """Yield ``(total, items)`` per page over ``skip``/``limit`` until the listing is exhausted."""
        skip = taken = 0
        while True:
            body = self.request(
                "GET", "/sessions", f"skip={skip}&limit={page_size}&filters={encoded_filters}"
            )
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise EnderTuringRequestError(
                    f"GET /sessions: unexpected body, {_shape(body)}: must be an object with an 'items' "
                    "list (content not shown: personal data)"
                )
            items, total = body["items"], body.get("total")
            if max_items is not None:
                items = items[: max_items - taken]
            if not items:
                return
            yield total, items
            skip += len(body["items"])
            taken += len(items)
            if max_items is not None and taken >= max_items:
                return
            if (total is not None and skip >= total) or (total is None and len(body["items"]) < page_size):
                return

    def get_session_detail(self, session_id: str, endpoint: str) -> Any:
        """``scores``/``summary``/``comments`` of one session; a 404 means no data (``None``)."""
        return self.request("GET", f"/sessions/{session_id}/{endpoint}", missing_ok=True)


def _shape(body: Any) -> str:
    """What a body is, by its type and keys, never by its values."""
    if isinstance(body, dict):
        return f"an object with keys {sorted(map(str, body))[:20]}"
    return f"a {type(body).__name__}"


def _detail_concurrency(extra: dict, conn_id: str) -> int:
    raw = extra.get("detail_concurrency", DEFAULT_DETAIL_CONCURRENCY)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = 0
    if not 1 <= value <= MAX_DETAIL_CONCURRENCY or str(value) != str(raw).strip():
        raise ConfigurationError(
            f"connection {conn_id!r}: extra detail_concurrency must be an integer from 1 to "
            f"{MAX_DETAIL_CONCURRENCY} (default {DEFAULT_DETAIL_CONCURRENCY})"
        )
    return value


def _as_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() not in ("false", "0", "no")
