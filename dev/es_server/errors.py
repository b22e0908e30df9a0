"""Elasticsearch-shaped errors: the status, the ``error.type`` and the body the official client parses."""

from __future__ import annotations

from typing import Any

SHARDS = {"total": 1, "successful": 1, "failed": 0}


class EsError(Exception):
    def __init__(self, status: int, error_type: str, reason: str, **extra: Any):
        super().__init__(reason)
        self.status, self.error_type, self.reason, self.extra = status, error_type, reason, extra

    def body(self) -> dict[str, Any]:
        cause = {"type": self.error_type, "reason": self.reason, **self.extra}
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}


def status_error_type(status: int) -> str:
    return {429: "es_rejected_execution_exception", 400: "document_parsing_exception"}.get(
        status, "internal_server_error" if status >= 500 else "illegal_argument_exception"
    )
