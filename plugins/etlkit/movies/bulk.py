"""Bulk loading: NDJSON actions, chunking by count and bytes, per-item inspection, bounded 429 retry.

Works with any client object exposing ``bulk(operations=..., index=...)`` like elasticsearch-py.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from etlkit.common.errors import BadInputError, TransientError
from etlkit.common.retry import Backoff

log = logging.getLogger(__name__)

REASON_LIMIT = 300


@dataclass(frozen=True)
class Action:
    doc_id: str
    payload: bytes  # the NDJSON lines of this action, newline-terminated


def index_action(doc_id: str, source: bytes) -> Action:
    return Action(doc_id, b'{"index":{"_id":' + json.dumps(doc_id).encode() + b"}}\n" + source + b"\n")


def delete_action(doc_id: str) -> Action:
    return Action(doc_id, json.dumps({"delete": {"_id": doc_id}}, separators=(",", ":")).encode() + b"\n")


def chunk_actions(actions: Iterable[Action], max_docs: int, max_bytes: int) -> Iterator[list[Action]]:
    """Chunks of at most ``max_docs`` actions and ``max_bytes`` bytes (an oversized action goes alone)."""
    chunk: list[Action] = []
    size = 0
    for action in actions:
        if chunk and (len(chunk) >= max_docs or size + len(action.payload) > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(action)
        size += len(action.payload)
    if chunk:
        yield chunk


@dataclass(frozen=True)
class ItemFailure:
    doc_id: str
    status: int
    error_type: str
    reason: str

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500

    def describe(self) -> str:
        return f"{self.doc_id}: {self.status} {self.error_type}: {self.reason}"


def inspect_items(items: list[dict[str, Any]]) -> tuple[int, list[ItemFailure]]:
    """(succeeded, failures) of a ``_bulk`` response; a delete answered 404 ``not_found`` succeeded."""
    succeeded = 0
    failures: list[ItemFailure] = []
    for item in items:
        op, result = next(iter(item.items()))
        status = int(result.get("status", 0))
        if 200 <= status < 300 or (op == "delete" and status == 404 and "error" not in result):
            succeeded += 1
            continue
        error = result.get("error") or {}
        if isinstance(error, str):
            error = {"type": "error", "reason": error}
        failures.append(
            ItemFailure(
                doc_id=str(result.get("_id")),
                status=status,
                error_type=str(error.get("type", "unknown")),
                reason=str(error.get("reason", ""))[:REASON_LIMIT],
            )
        )
    return succeeded, failures


class BulkItemsRetryable(TransientError):
    """Items failed with 429/5xx: the task retries on fresh connections."""


class BulkItemsRejected(BadInputError):
    """Items were rejected with a 4xx (mapping, parsing...): retrying cannot help."""


def bulk_error(failures: list[ItemFailure], max_reported: int, index: str) -> Exception:
    shown = "; ".join(f.describe() for f in failures[:max_reported])
    message = (
        f"{len(failures)} bulk item(s) failed on {index}; first {min(len(failures), max_reported)}: {shown}"
    )
    if all(f.retryable for f in failures):
        return BulkItemsRetryable(message)
    return BulkItemsRejected(message)


@dataclass
class BulkResult:
    succeeded: int = 0
    chunks: int = 0
    failures: list[ItemFailure] = field(default_factory=list)


@dataclass
class BulkLoader:
    """Sends chunks; retries only the 429 items a bounded number of times, then reports what failed."""

    client: Any
    index: str
    max_chunk_docs: int = 500
    max_chunk_bytes: int = 10 * 1024 * 1024
    max_reported_errors: int = 10
    retries_429: int = 3
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def load(self, actions: Iterable[Action], result: BulkResult | None = None) -> BulkResult:
        """Load every action; after the chunk holding the first failure, stop and raise.

        Pass ``result`` to keep the counts (succeeded, failures) when the load raises.

        One chunk is in flight on a sender thread while the next one is built from ``actions`` (extraction
        and transform overlap the server's work), so at most two chunks are in memory.
        """
        result = BulkResult() if result is None else result
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulk-sender") as sender:
            in_flight: Future | None = None
            for chunk in chunk_actions(actions, self.max_chunk_docs, self.max_chunk_bytes):
                if in_flight is not None:
                    self._settle(in_flight.result(), result)
                in_flight = sender.submit(self._send_with_429_retry, chunk)
            if in_flight is not None:
                self._settle(in_flight.result(), result)
        return result

    def _settle(self, outcome: tuple[int, list[ItemFailure]], result: BulkResult) -> None:
        succeeded, failures = outcome
        result.succeeded += succeeded
        result.chunks += 1
        if failures:
            result.failures = failures
            error = bulk_error(failures, self.max_reported_errors, self.index)
            log.error("%s", error)
            raise error

    def _send_with_429_retry(self, chunk: list[Action]) -> tuple[int, list[ItemFailure]]:
        succeeded_total = 0
        pending = chunk
        attempt = 0
        while True:
            response = self.client.bulk(operations=[b"".join(a.payload for a in pending)], index=self.index)
            succeeded, failures = inspect_items(response["items"])
            succeeded_total += succeeded
            throttled = {f.doc_id for f in failures if f.status == 429}
            if not throttled or len(throttled) < len(failures) or attempt >= self.retries_429:
                return succeeded_total, failures
            pending = [a for a in pending if a.doc_id in throttled]
            attempt += 1
            delay = Backoff(self.retries_429 + 1, self.initial_backoff_s, self.max_backoff_s, jitter=0).delay(
                attempt
            )
            log.warning("%d bulk item(s) throttled (429); retry %d in %.1fs", len(pending), attempt, delay)
            self.sleep(delay)
