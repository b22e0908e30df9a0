"""One sync run: ask the backend, extract from Sierra into a gzip TSV file, post it, repeat in full mode.

The hooks are passed in (``SierraSource`` / ``SyncBackend``), so the loop is plain Python;
``run_sync`` is the one call the operator makes.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from etlkit.common.alerting import alert_context
from etlkit.common.errors import BadInputError
from etlkit.common.metrics import RunMetrics
from etlkit.common.retry import Backoff, call_with_retries, is_transient
from etlkit.sierra.budget import worst_case_batch_seconds
from etlkit.sierra.extract import BatchStats, Selection, part_count
from etlkit.sierra.protocol import (
    SYNC_CHANGES,
    SYNC_FULL,
    PostedBatch,
    SyncRequest,
    batch_delivered,
    format_timestamp,
    parse_sync_response,
)
from etlkit.sierra.settings import SierraSettings
from etlkit.sierra.window import ClampReport, changes_window

log = logging.getLogger(__name__)

Metric = Callable[[str, float], None]


# query_canceled: the statement used up statement_timeout_seconds
STATEMENT_TIMEOUT_SQLSTATE = "57014"


def retryable_on_sierra(exc: BaseException) -> bool:
    """The shared rule, less the statement timeout: on the production Sierra database a query that
    used up its budget is not run again (lower max_batches or raise the timeout instead)."""
    return is_transient(exc) and getattr(exc, "sqlstate", None) != STATEMENT_TIMEOUT_SQLSTATE


class ClampRefused(BadInputError):
    """``clamp_policy = "fail"`` and the changes window had to be clamped."""


class SyncProtocolError(BadInputError):
    """Counts that must agree do not (upserted vs written, COPY vs snapshot), or the backend made
    no progress after a full batch."""


class Snapshot(Protocol):
    db_now: datetime
    timezone: str

    def count_clamped(self, start: datetime, floor: datetime) -> tuple[int, int, datetime | None]: ...
    def batch_stats(self, selection: Selection) -> BatchStats: ...
    def copy_rows(
        self, selection: Selection, path: Path, itype_null_fallback: int | None, parts: int = 1
    ) -> int: ...


class SierraSource(Protocol):
    def snapshot(self, statement_timeout_seconds: float) -> AbstractContextManager[Snapshot]: ...


class SyncBackend(Protocol):
    def get_sync(self) -> Any: ...
    def post_sync(self, path: Path, timestamp: str) -> Any: ...


@dataclass
class Extracted:
    path: Path
    db_now: datetime
    stats: BatchStats
    clamp: ClampReport | None = None


@dataclass
class SyncSummary:
    mode: str | None = None
    batches: int = 0
    rows: int = 0
    timestamps: list[str] = field(default_factory=list)
    full_sync_completed: bool = False
    clamped: dict | None = None
    itype_fallbacks: int = 0
    dry_run_file: str | None = None

    def as_dict(self) -> dict:
        summary = {
            "mode": self.mode,
            "batches": self.batches,
            "rows": self.rows,
            "timestamps": self.timestamps,
            "full_sync_completed": self.full_sync_completed,
            "clamped": self.clamped,
            "itype_fallbacks": self.itype_fallbacks,
        }
        if self.dry_run_file:
            summary["dry_run_file"] = self.dry_run_file
        return summary


class SierraSync:
    def __init__(
        self,
        sierra: SierraSource,
        backend: SyncBackend,
        settings: SierraSettings,
        workdir: Path,
        metric: Metric = lambda name, value: None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        """``deadline`` (on ``clock``): no batch starts unless its worst case ends before it."""
        self.sierra = sierra
        self.backend = backend
        self.settings = settings
        self.workdir = workdir
        self.metric = metric
        self.deadline = deadline
        self.clock = clock
        self.backoff = Backoff(
            settings.retry_attempts, settings.retry_base_seconds, settings.retry_max_seconds
        )
        self.summary = SyncSummary()

    # -- backend -----------------------------------------------------------------------------
    def fetch_request(self) -> SyncRequest:
        body = call_with_retries(self.backend.get_sync, what="GET /sync", backoff=self.backoff)
        request = parse_sync_response(body)
        log.info("GET /sync: %s", request.describe())
        return request

    def deliver(self, extracted: Extracted, request: SyncRequest) -> None:
        timestamp = format_timestamp(extracted.db_now)
        rows = extracted.stats.item_count
        posted = PostedBatch(
            request.mode, rows, request.batch_size, extracted.stats.max_item_id, extracted.db_now
        )

        def reconcile() -> str | None:
            if batch_delivered(posted, self.fetch_request()):
                log.warning("POST /sync response was lost but the backend has the batch: not re-sending")
                return "delivered"
            return None

        answer = call_with_retries(
            lambda: self.backend.post_sync(extracted.path, timestamp),
            what="POST /sync",
            backoff=self.backoff,
            before_retry=reconcile,
        )
        if answer != "delivered":
            upserted = answer.get("upserted") if isinstance(answer, dict) else None
            log.info("POST /sync: rows written %s, upserted %s", rows, upserted)
            if upserted != rows:
                raise SyncProtocolError(f"POST /sync upserted {upserted!r} rows but the file has {rows}")
        self.summary.batches += 1
        self.summary.rows += rows
        self.summary.timestamps.append(timestamp)
        self.metric("sierra_sync.rows_posted", rows)
        self.metric("sierra_sync.batches_posted", 1)

    # -- Sierra ------------------------------------------------------------------------------
    def extract(self, request: SyncRequest) -> Extracted:
        path = self.workdir / "data.tsv.gz"
        extracted = call_with_retries(
            lambda: self._extract_once(request, path),
            what="Sierra extraction",
            backoff=self.backoff,
            retryable=retryable_on_sierra,
        )
        if extracted.clamp is not None:  # counted once, for the attempt that succeeded
            self._count_clamp(extracted.clamp)
        return extracted

    def _extract_once(self, request: SyncRequest, path: Path) -> Extracted:
        settings = self.settings
        with self.sierra.snapshot(settings.statement_timeout_seconds) as snap:
            log.info("Sierra snapshot: db_now %s, TimeZone %s", snap.db_now.isoformat(), snap.timezone)
            clamp = None
            if request.mode == SYNC_FULL:
                selection = Selection(SYNC_FULL, request.last_synced_id, request.batch_size)
            else:
                window = changes_window(
                    request.since,
                    snap.db_now,
                    settings.max_sync_delta_minutes,
                    settings.changes_overlap_seconds,
                )
                log.info(
                    "changes window: requested %s, start %s, floor %s, effective bound %s",
                    window.requested.isoformat(),
                    window.start.isoformat(),
                    window.floor.isoformat(),
                    window.bound.isoformat(),
                )
                if window.clamped:
                    clamp = ClampReport(
                        window.skipped_seconds, *snap.count_clamped(window.start, window.floor)
                    )
                    self._report_clamp(window.requested, window.floor, clamp)
                selection = Selection(SYNC_CHANGES, since=window.bound)
            stats = snap.batch_stats(selection)
            parts = part_count(
                stats.item_count, settings.extract_parallelism, settings.extract_min_items_per_part
            )
            rows = snap.copy_rows(selection, path, settings.itype_null_fallback, parts)
        if rows != stats.item_count:
            raise SyncProtocolError(
                f"COPY wrote {rows} rows but the snapshot selects {stats.item_count} items"
            )
        log.info(
            "extracted %s rows (max item id %s), %s bytes gzip", rows, stats.max_item_id, path.stat().st_size
        )
        self._report_itype_fallbacks(stats)
        return Extracted(path, snap.db_now, stats, clamp)

    def _report_clamp(self, requested: datetime, floor: datetime, clamp: ClampReport) -> None:
        log.warning(
            "changes window clamped: requested %s, floor %s, %.0f s skipped, "
            "%s bib and %s item records updated in the skipped span are NOT sent (oldest %s)",
            requested.isoformat(),
            floor.isoformat(),
            clamp.seconds,
            clamp.bib_records,
            clamp.item_records,
            clamp.oldest_skipped.isoformat() if clamp.oldest_skipped else None,
        )
        if self.settings.clamp_policy == "fail":
            self._count_clamp(clamp)
            raise ClampRefused(
                f"changes window clamped by {clamp.seconds:.0f} s ({clamp.bib_records} bib and "
                f"{clamp.item_records} item records skipped) and clamp_policy is 'fail'; raise "
                "max_sync_delta_minutes for one run, set clamp_policy 'warn' or force a full resync"
            )

    def _count_clamp(self, clamp: ClampReport) -> None:
        self.summary.clamped = clamp.as_summary()
        self.metric("sierra_sync.changes_clamped_bib_records", clamp.bib_records)
        self.metric("sierra_sync.changes_clamped_item_records", clamp.item_records)
        self.metric("sierra_sync.changes_clamped_seconds", clamp.seconds)

    def _report_itype_fallbacks(self, stats: BatchStats) -> None:
        if not stats.null_itypes:
            return
        if self.settings.itype_null_fallback is None:
            log.warning("%s items have a NULL itype, written as an empty field", stats.null_itypes)
            return
        log.warning(
            "%s items have a NULL itype, written as %s; first ids: %s",
            stats.null_itypes,
            self.settings.itype_null_fallback,
            stats.first_null_itype_ids,
        )
        self.summary.itype_fallbacks += stats.null_itypes
        self.metric("sierra_sync.itype_fallbacks", stats.null_itypes)

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> dict:
        max_batches = self.settings.max_batches_per_run
        dry_run_dir = Path(self.settings.dry_run_dir) if self.settings.dry_run_dir else None
        request = self.fetch_request()
        self.summary.mode = request.mode
        while True:
            with alert_context(sync_mode=request.mode, batch=self.summary.batches + 1):
                extracted = self.extract(request)
                if dry_run_dir is not None:
                    return self._keep_dry_run(extracted, dry_run_dir)
                self.deliver(extracted, request)
            if request.mode == SYNC_CHANGES:
                return self.summary.as_dict()
            if extracted.stats.item_count < request.batch_size:
                self.summary.full_sync_completed = True
                log.info("full sync completed with a %s-row batch", extracted.stats.item_count)
                return self.summary.as_dict()
            if self.summary.batches >= max_batches:
                log.info("stopping after %s full batches; the next run resumes", self.summary.batches)
                return self.summary.as_dict()
            if not self._time_for_another_batch():
                return self.summary.as_dict()
            following = self.fetch_request()
            if following.mode != SYNC_FULL:
                return self.summary.as_dict()
            if following.last_synced_id < extracted.stats.max_item_id:
                raise SyncProtocolError(
                    f"backend last_synced_id {following.last_synced_id} < {extracted.stats.max_item_id}, "
                    "the largest item id just posted: the batch was not persisted"
                )
            request = following

    def _time_for_another_batch(self) -> bool:
        if self.deadline is None:
            return True
        left, needed = self.deadline - self.clock(), worst_case_batch_seconds(self.settings)
        if left >= needed:
            return True
        log.info(
            "stopping after %s full batches: %.0f s left before execution_timeout, a batch may take "
            "%.0f s; the next run resumes",
            self.summary.batches,
            left,
            needed,
        )
        return False

    def _keep_dry_run(self, extracted: Extracted, dry_run_dir: Path) -> dict:
        dry_run_dir.mkdir(parents=True, exist_ok=True)
        target = dry_run_dir / f"{extracted.db_now.strftime('%Y%m%dT%H%M%S%f')}-data.tsv.gz"
        shutil.move(extracted.path, target)
        log.info("dry run: %s rows written to %s, nothing posted", extracted.stats.item_count, target)
        self.summary.rows = extracted.stats.item_count
        self.summary.dry_run_file = str(target)
        return self.summary.as_dict()


def run_sync(
    sierra: SierraSource,
    backend: SyncBackend,
    settings: SierraSettings,
    *,
    metric: Metric = lambda name, value: None,
    deadline: float | None = None,
) -> dict:
    """One run in a work directory of its own, removed on every path; returns the summary."""
    with tempfile.TemporaryDirectory(prefix="sierra-sync-") as workdir:
        return SierraSync(sierra, backend, settings, Path(workdir), metric=metric, deadline=deadline).run()


def run_metrics(summary: dict, settings: SierraSettings) -> RunMetrics:
    """The run's ``ETL_METRICS``: items extracted, items the backend upserted (none in a dry run)."""
    dry_run = settings.dry_run_dir is not None
    keys = ("mode", "batches", "full_sync_completed", "itype_fallbacks")
    return RunMetrics(
        "sierra",
        rows_read=summary["rows"],
        rows_loaded=0 if dry_run else summary["rows"],
        extra={"dry_run": dry_run, **{k: summary.get(k) for k in keys}},
    )
