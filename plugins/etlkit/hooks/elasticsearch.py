"""Elasticsearch hook: the official Python client (9.x) built from an Airflow connection.

The provider's ``ElasticsearchPythonHook`` ignores Airflow connections, hence this thin hook.
Connection: host, port, scheme from the extra ``scheme``, the schema field or an ``https://`` URI, optional
login/password; extras ``api_key``, ``ca_certs``, ``verify_certs`` (default true), ``compatible_with``.

A 9.x client announces ``compatible-with=9``, which an 8.x server rejects. The hook pins the major at the
transport layer on every request (``Accept`` and ``Content-Type``, ``_bulk`` included): from the
``compatible_with`` extra, or else from ``version.number`` of a plain-JSON ``GET /`` both majors accept.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from etlkit.common.errors import BadInputError, ConfigurationError

try:
    from airflow.sdk import BaseHook
except ImportError:  # pragma: no cover - older Airflow
    from airflow.hooks.base import BaseHook

log = logging.getLogger(__name__)

_COMPAT_RE = re.compile(r"compatible-with=\d+")
_VENDOR_RE = re.compile(r"application/vnd\.elasticsearch\+([a-z-]+); ?compatible-with=\d+")
REQUEST_TIMEOUT_S = 60
TRANSPORT_RETRIES = 3


def compat_transport_class(major: int | None):
    """A ``Transport`` that rewrites the client's ``compatible-with=<client major>`` to ``major``;
    with ``major=None`` it sends plain ``application/json`` / ``application/x-ndjson`` instead."""

    def rewrite(value: str) -> str:
        if major is None:
            return _VENDOR_RE.sub(r"application/\g<1>", value)
        return _COMPAT_RE.sub(f"compatible-with={major}", value)

    from elastic_transport import Transport

    class PinnedCompatTransport(Transport):
        def perform_request(self, method, target, *, headers=None, **kwargs):  # type: ignore[override]
            if headers:
                headers = headers.copy()
                for name in ("accept", "content-type"):
                    value = headers.get(name)
                    if value:
                        headers[name] = rewrite(value)
            return super().perform_request(method, target, headers=headers, **kwargs)

    return PinnedCompatTransport


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


HTTP_SCHEMES = ("http", "https")
# Request-level 4xx that a later try may not meet: a missing index can be created by then, a conflict
# or a timeout can clear. Every other 4xx (credentials, privileges, a malformed or oversized request)
# comes back the same on every retry.
RETRYABLE_CLIENT_STATUSES = frozenset({404, 408, 409, 429})
_REFUSAL_HINTS = {
    401: "check the connection's login/password or api_key",
    403: "the connection's user lacks a privilege on the index or cluster",
    413: "the request is larger than the server's http.max_content_length: lower bulk_chunk_bytes",
}


class ElasticsearchRefusedError(BadInputError):
    """Elasticsearch answered a request with a 4xx that retrying cannot change."""


@contextmanager
def refusals_fail_fast(conn_id: str) -> Iterator[None]:
    """Turn a request refused for good (see ``RETRYABLE_CLIENT_STATUSES``) into
    ``ElasticsearchRefusedError``, so the task fails at once instead of using its retries."""
    from elasticsearch import ApiError

    try:
        yield
    except ApiError as exc:
        status = exc.meta.status
        if not 400 <= status < 500 or status in RETRYABLE_CLIENT_STATUSES:
            raise
        hint = _REFUSAL_HINTS.get(status, "retrying cannot change the answer")
        raise ElasticsearchRefusedError(
            f"Elasticsearch refused a request of connection {conn_id!r} with {status} ({hint}): "
            f"{str(exc.message)[:300]}"
        ) from exc


class ElasticsearchClientHook(BaseHook):
    """Builds a fresh ``elasticsearch.Elasticsearch`` per call of ``get_client`` (``get_conn``); the caller
    closes it. Nothing is opened before that. ``test_connection`` backs the UI's Test button."""

    conn_name_attr = "es_conn_id"
    default_conn_name = "movies_elasticsearch"
    conn_type = "elasticsearch"
    hook_name = "Elasticsearch (official client)"

    def __init__(self, es_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.es_conn_id = es_conn_id

    def _settings(self) -> dict[str, Any]:
        conn = self.get_connection(self.es_conn_id)
        extra = conn.extra_dejson or {}
        scheme = self._scheme(conn, extra)
        if not conn.host:
            raise ConfigurationError(f"connection {self.es_conn_id!r} has no host")
        port = conn.port or 9200
        verify = extra.get("verify_certs", True)
        if isinstance(verify, str):
            verify = verify.strip().lower() not in {"false", "0", "no"}
        compat = extra.get("compatible_with")
        return {
            "url": f"{scheme}://{conn.host}:{port}",
            "login": conn.login,
            "password": conn.password,
            "api_key": extra.get("api_key"),
            "ca_certs": extra.get("ca_certs"),
            "verify_certs": bool(verify),
            "compatible_with": int(compat) if compat not in (None, "") else None,
        }

    def _scheme(self, conn, extra: dict[str, Any]) -> str:
        """The ``scheme`` extra, else an http(s) schema field, else the URI's scheme (an
        ``https://…`` connection has conn_type ``https``); plain http only when nothing says otherwise."""
        if (scheme := extra.get("scheme")) is not None:
            if scheme not in HTTP_SCHEMES:
                raise ConfigurationError(
                    f"connection {self.es_conn_id!r}: scheme {scheme!r} is not http or https"
                )
            return scheme
        for candidate in (conn.schema, conn.conn_type):
            if candidate in HTTP_SCHEMES:
                return candidate
        return "http"

    def _probe_major(self, settings: dict[str, Any]) -> int:
        """``GET /`` with plain JSON headers, which every major accepts."""
        import elasticsearch

        kwargs = {**self._client_kwargs(settings), "transport_class": compat_transport_class(None)}
        with elasticsearch.Elasticsearch(**kwargs) as probe:
            number = probe.info().body["version"]["number"]
        return int(str(number).split(".")[0])

    @staticmethod
    def _client_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "hosts": [settings["url"]],
            "request_timeout": REQUEST_TIMEOUT_S,
            "max_retries": TRANSPORT_RETRIES,
            "retry_on_timeout": True,
            "verify_certs": settings["verify_certs"],
        }
        if settings["ca_certs"]:
            kwargs["ca_certs"] = settings["ca_certs"]
        if settings["api_key"]:
            kwargs["api_key"] = settings["api_key"]
        elif settings["login"]:
            kwargs["basic_auth"] = (settings["login"], settings["password"] or "")
        return kwargs

    def get_client(self):
        """A new client pinned to the server's compatibility major (``compatible_with`` or probed)."""
        import elasticsearch

        settings = self._settings()
        client_major = int(elasticsearch.__versionstr__.split(".")[0])
        major = settings["compatible_with"] or self._probe_major(settings)
        kwargs = self._client_kwargs(settings)
        if major != client_major:
            kwargs["transport_class"] = compat_transport_class(major)
        log.info(
            "Elasticsearch %s via connection %r, compatible-with=%s",
            redact_url(settings["url"]),
            self.es_conn_id,
            major,
        )
        return elasticsearch.Elasticsearch(**kwargs)

    def get_conn(self):
        return self.get_client()

    def test_connection(self) -> tuple[bool, str]:
        """``(True, "<server version> at <url>")`` when ``GET /`` answers through this connection, else
        ``(False, why)``. The message holds no credentials: only the URL without userinfo, a status and
        Elasticsearch's own error type."""
        from elasticsearch import ApiError

        try:
            with self.get_client() as client:
                info = client.info().body
        except ApiError as exc:
            hint = _REFUSAL_HINTS.get(exc.meta.status)
            answer = f"Elasticsearch answered {exc.meta.status} ({self._safe(str(exc.message))})"
            return False, f"{answer}: {hint}" if hint else answer
        except Exception as exc:
            return False, f"{type(exc).__name__}: {self._safe(str(exc))}"
        version = info.get("version", {}).get("number", "?")
        return True, f"Elasticsearch {version} at {redact_url(self._settings()['url'])}"

    def _safe(self, text: str) -> str:
        """``text`` cut to 300 characters with the connection's password and API key blanked."""
        settings = self._settings_or_none() or {}
        for secret in (settings.get("password"), settings.get("api_key")):
            if secret:
                text = text.replace(str(secret), "***")
        return text[:300]

    def _settings_or_none(self) -> dict[str, Any] | None:
        try:
            return self._settings()
        except Exception:
            return None
