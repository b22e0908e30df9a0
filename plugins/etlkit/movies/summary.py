"""One summary per run (§8): rows read, documents indexed, deleted and rejected, the HWM before and after,
and the mode with its reason, built from the small results the tasks pass on; no row is read for it.

A successful run's last task emits it; a failed run's summary is emitted by the failure callback of the task
that ended the run, with the counts that task reached (carried on its exception, see ``PROGRESS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from etlkit.common.metrics import RunMetrics
from etlkit.movies.bulk import BulkResult

PIPELINE = "movies"
RUN_SUMMARY_KEY = "run_summary"
# Attribute of a task's exception holding the counts the task reached before it failed.
PROGRESS = "etlkit_movies_progress"


def load_progress(rows_read: int, result: BulkResult, **more: int) -> dict[str, int]:
    """Counts of a task that streamed rows into ``_bulk``; ``rows_rejected`` = items Elasticsearch refused."""
    return {
        "rows_read": rows_read,
        "rows_loaded": result.succeeded,
        "rows_rejected": len(result.failures),
        **more,
    }


def _count(counts: Mapping[str, Any] | None, name: str) -> int:
    return int((counts or {}).get(name) or 0)


def run_summary(
    *,
    plan: Mapping[str, Any] | None,
    synced: Mapping[str, Any] | None,
    committed: Mapping[str, Any] | None,
    reconciled: Mapping[str, Any] | None,
    failed_task: str | None = None,
) -> RunMetrics:
    """``synced``/``reconciled``: the counts of ``sync``/``reconcile`` (their XCom, or the progress a failed
    try reached); ``committed``: ``commit_state``'s XCom. A task that did not run gives ``None``."""
    plan = plan or {}
    hwm_before = plan.get("hwm_before")
    return RunMetrics(
        PIPELINE,
        rows_read=_count(synced, "rows_read") + _count(reconciled, "rows_read"),
        rows_loaded=_count(synced, "rows_loaded") + _count(reconciled, "rows_loaded"),
        rows_rejected=_count(synced, "rows_rejected") + _count(reconciled, "rows_rejected"),
        extra={
            "outcome": "failed" if failed_task else "success",
            "failed_task": failed_task,
            "mode": plan.get("mode"),
            "reason": plan.get("reason"),
            "index": plan.get("write_index"),
            "deleted": _count(reconciled, "deleted"),
            "reconciled": reconciled is not None,
            "hwm_before": hwm_before,
            # Only commit_state writes the mark: without it the stored HWM is still the one plan read.
            "hwm_after": committed["hwm_after"] if committed else hwm_before,
            "future_dated": int(((synced or {}).get("extra") or {}).get("future_dated") or 0),
        },
    )
