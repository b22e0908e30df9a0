"""The Signum backend's ``/sync`` endpoint over HttpHook, with the API key kept out of logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from airflow.providers.http.hooks.http import HttpHook
from airflow.sdk.log import mask_secret
from requests_toolbelt import MultipartEncoder

from etlkit.common.errors import ConfigurationError
from etlkit.common.http import retry_after_seconds
from etlkit.sierra.protocol import (
    UPLOAD_CONTENT_TYPE,
    UPLOAD_FILENAME,
    BackendHttpError,
    InvalidSyncResponse,
    parse_sync_response,
)
from etlkit.sierra.settings import SierraSettings

API_KEY_HEADER = "x-api-key"
SYNC_ENDPOINT = "sync"


def _detail(response) -> str:
    """The backend's ``detail`` (never echoes the key), else the reason phrase."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return json.dumps(detail)[:500] if detail is not None else response.reason


class SignumBackendHook(HttpHook):
    """``GET /sync`` and multipart ``POST /sync``; non-2xx raise ``BackendHttpError`` with the status.

    The key is the connection password (or extra ``x-api-key``). A login is refused: it would make
    HttpHook add Basic auth with the key. Every other unknown extra key would be sent as a header.
    """

    conn_name_attr = "http_conn_id"
    default_conn_name = "signum_backend"
    conn_type = "http"
    hook_name = "Signum backend"

    def __init__(
        self,
        http_conn_id: str = default_conn_name,
        get_timeout: float = SierraSettings.model_fields["get_timeout_seconds"].default,
        post_timeout: float = SierraSettings.model_fields["post_timeout_seconds"].default,
    ):
        super().__init__(method="GET", http_conn_id=http_conn_id)
        self.get_timeout = get_timeout
        self.post_timeout = post_timeout
        self._api_key: str | None = None

    def test_connection(self) -> tuple[bool, str]:
        """The UI's Test button: ``GET /sync`` with the key (it changes nothing on the backend)."""
        try:
            request = parse_sync_response(self.get_sync())
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            return False, message.replace(self._api_key, "***") if self._api_key else message
        return True, f"GET /sync answered: {request.describe()}"

    def api_key(self) -> str:
        if self._api_key is None:
            connection = self.get_connection(self.http_conn_id)
            if connection.login:
                raise ConfigurationError(
                    f"connection {self.http_conn_id!r} has a login: leave it empty, or HttpHook sends the API "
                    "key as a Basic-auth password too"
                )
            key = connection.password or connection.extra_dejson.get(API_KEY_HEADER)
            if not key:
                raise ConfigurationError(
                    f"connection {self.http_conn_id!r} has no API key: set its password (or extra {API_KEY_HEADER})"
                )
            mask_secret(key)
            self._api_key = key
        return self._api_key

    def _request(self, method: str, timeout: float, **kwargs: Any):
        self.method = method
        headers = {API_KEY_HEADER: self.api_key(), **kwargs.pop("headers", {})}
        response = self.run(
            SYNC_ENDPOINT,
            headers=headers,
            extra_options={"check_response": False, "timeout": timeout},
            **kwargs,
        )
        if not 200 <= response.status_code < 300:
            raise BackendHttpError(
                f"{method} /sync",
                response.status_code,
                _detail(response),
                retry_after_seconds(response.headers.get("Retry-After")),
            )
        return response

    def get_sync(self) -> Any:
        response = self._request("GET", self.get_timeout)
        try:
            return response.json()
        except ValueError as exc:
            raise InvalidSyncResponse("GET /sync answered 200 with a body that is not JSON") from exc

    def post_sync(self, path: Path, timestamp: str) -> Any:
        """Stream ``path`` as part ``file``; every call re-reads the same bytes from the start."""
        with path.open("rb") as file:
            body = MultipartEncoder(
                fields={"timestamp": timestamp, "file": (UPLOAD_FILENAME, file, UPLOAD_CONTENT_TYPE)}
            )
            response = self._request(
                "POST", self.post_timeout, data=body, headers={"Content-Type": body.content_type}
            )
        return response.json()
