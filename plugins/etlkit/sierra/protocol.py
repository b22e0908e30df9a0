"""The backend's ``/sync`` contract: validating GET bodies, the output columns, delivery checks."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from etlkit.common.errors import BadInputError

log = logging.getLogger(__name__)

SYNC_FULL = "SYNC_FULL"
SYNC_CHANGES = "SYNC_CHANGES"

COLUMNS = (
    "item_record_id",
    "item_number",
    "barcode",
    "bib_record_id",
    "bib_number",
    "best_author",
    "best_title",
    "itype_code_num",
    "item_type_name",
    "material_code",
    "material_name",
    "classification",
    "shelfmark_json",
)
TSV_HEADER = ("\t".join(COLUMNS) + "\n").encode()
UPLOAD_FILENAME = "data.tsv.gz"
UPLOAD_CONTENT_TYPE = "application/gzip"


class BackendHttpError(Exception):
    """A non-2xx answer from the backend, with its real status code (HttpHook hides it in a string);
    ``etlkit.common.retry`` reads ``status`` (5xx and 429 transient) and ``retry_after``."""

    def __init__(self, operation: str, status: int, detail: str, retry_after: float | None = None):
        super().__init__(f"{operation} answered HTTP {status}: {detail}")
        self.status = status
        self.retry_after = retry_after


class InvalidSyncResponse(BadInputError):
    """GET /sync answered 200 with a body the DAG cannot act on."""


@dataclass(frozen=True)
class SyncRequest:
    """What the backend asks for next."""

    mode: str
    batch_size: int | None = None
    last_synced_id: int | None = None
    since: datetime | None = None

    def describe(self) -> str:
        if self.mode == SYNC_FULL:
            return f"{SYNC_FULL} batch_size={self.batch_size} last_synced_id={self.last_synced_id}"
        return f"{SYNC_CHANGES} timestamp={self.since.isoformat()}"


def parse_timestamp(text: str, field: str = "timestamp") -> datetime:
    """ISO-8601 to an aware datetime; a value without UTC offset is read as UTC, with a warning."""
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        raise InvalidSyncResponse(f"GET /sync: {field}={text!r} is not an ISO-8601 datetime") from exc
    if value.tzinfo is None:
        log.warning("GET /sync: %s %r has no UTC offset; reading it as UTC", field, text)
        value = value.replace(tzinfo=UTC)
    return value


def _require_int(body: dict[str, Any], key: str, minimum: int) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidSyncResponse(f"GET /sync: {key}={value!r} must be an integer >= {minimum}")
    return value


def parse_sync_response(body: Any) -> SyncRequest:
    """Validate on ``sync_mode`` (the reference read ``sync_type`` and never validated)."""
    if not isinstance(body, dict):
        raise InvalidSyncResponse(f"GET /sync: expected a JSON object, got {type(body).__name__}")
    mode = body.get("sync_mode")
    if mode == SYNC_FULL:
        return SyncRequest(
            mode=mode,
            batch_size=_require_int(body, "batch_size", 1),
            last_synced_id=_require_int(body, "last_synced_id", 0),
        )
    if mode == SYNC_CHANGES:
        raw = body.get("timestamp")
        if not isinstance(raw, str):
            raise InvalidSyncResponse(f"GET /sync: timestamp={raw!r} must be an ISO-8601 string")
        return SyncRequest(mode=mode, since=parse_timestamp(raw))
    raise InvalidSyncResponse(f"GET /sync: sync_mode={mode!r} must be {SYNC_FULL!r} or {SYNC_CHANGES!r}")


def format_timestamp(value: datetime) -> str:
    """``2025-03-14T08:15:30.250000+00:00``: the DB time in UTC, always with microseconds."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class PostedBatch:
    mode: str
    rows: int
    batch_size: int | None
    max_item_id: int | None
    timestamp: datetime


def batch_delivered(batch: PostedBatch, state: SyncRequest) -> bool:
    """Whether the backend state shows that a POST whose response was lost did commit."""
    if batch.mode == SYNC_FULL and batch.rows < batch.batch_size:
        return state.mode == SYNC_CHANGES
    if batch.mode == SYNC_FULL:
        return state.mode == SYNC_FULL and state.last_synced_id >= batch.max_item_id
    return state.mode == SYNC_CHANGES and state.since == batch.timestamp
