"""Per-component counters kept by the port layer, identical for every component type."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from etlkit.jobs.xcom import XComValue

log = logging.getLogger("etlkit.jobs.metrics")

TOP_REJECT_REASONS = 50
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class ComponentSummary(XComValue):
    """One component try's counters as handed on (XCom ``return_value``, the metrics rows): counters
    only, never row values; bounded in size (top reject reasons, truncated error)."""

    component_id: str
    component_type: str
    try_number: int
    status: str
    rows_in: dict[str, int]
    rows_out: dict[str, int]
    rows_dropped: int
    rows_rejected: int
    reject_reasons: dict[str, int]
    details: dict[str, Any]
    started_at: str  # ISO timestamps
    finished_at: str | None
    duration_s: float | None
    error: str | None


@dataclass
class ComponentMetrics:
    component_id: str
    component_type: str
    try_number: int = 1
    rows_in: dict[str, int] = field(default_factory=dict)
    rows_out: dict[str, int] = field(default_factory=dict)
    rows_dropped: int = 0
    rows_rejected: int = 0
    reject_reasons: Counter = field(default_factory=Counter)
    details: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    error: str | None = None

    def count_in(self, port: str, rows: int) -> None:
        self.rows_in[port] = self.rows_in.get(port, 0) + rows

    def count_out(self, port: str, rows: int) -> None:
        self.rows_out[port] = self.rows_out.get(port, 0) + rows

    def reject(self, reason: str, rows: int = 1) -> None:
        self.rows_rejected += rows
        self.reject_reasons[reason] += rows

    def count_detail(self, group: str, key: str, rows: int = 1) -> None:
        bucket = self.details.setdefault(group, {})
        bucket[key] = bucket.get(key, 0) + rows

    def finish(self, status: str, error: BaseException | None = None) -> None:
        self.status = status
        self.finished_at = datetime.now(UTC)
        if error is not None:
            self.error = f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds(), 3)

    def snapshot(self) -> ComponentSummary:
        return ComponentSummary(
            component_id=self.component_id,
            component_type=self.component_type,
            try_number=self.try_number,
            status=self.status,
            rows_in=dict(self.rows_in),
            rows_out=dict(self.rows_out),
            rows_dropped=self.rows_dropped,
            rows_rejected=self.rows_rejected,
            reject_reasons=dict(self.reject_reasons.most_common(TOP_REJECT_REASONS)),
            details=self.details,
            started_at=self.started_at.isoformat(),
            finished_at=self.finished_at.isoformat() if self.finished_at else None,
            duration_s=self.duration_s,
            error=self.error,
        )

    def summary(self) -> dict[str, Any]:
        """The XCom form (``snapshot().to_xcom()``)."""
        return self.snapshot().to_xcom()

    def log(self) -> ComponentSummary:
        snapshot = self.snapshot()
        summary = snapshot.to_xcom()
        log.info("DECLARATIVE_METRICS %s", json.dumps(summary, sort_keys=True))
        log.info("%s", render_table(summary))
        return snapshot


def never_ran(component_id: str, component_type: str) -> ComponentSummary:
    """The summary of a component whose task never started (its upstream failed, or _prepare did)."""
    metrics = ComponentMetrics(component_id, component_type, try_number=0)
    metrics.finish("upstream_failed")
    return metrics.snapshot()


def render_table(summary: dict[str, Any]) -> str:
    lines = [f"component {summary['component_id']} ({summary['component_type']}): {summary['status']}"]
    for port, rows in summary["rows_in"].items():
        lines.append(f"  in  {port:<20} {rows:>12}")
    for port, rows in summary["rows_out"].items():
        lines.append(f"  out {port:<20} {rows:>12}")
    lines.append(f"  dropped {summary['rows_dropped']:>28}")
    lines.append(f"  rejected {summary['rows_rejected']:>27}")
    for reason, rows in summary["reject_reasons"].items():
        lines.append(f"    {reason:<30} {rows:>8}")
    lines.append(f"  duration_s {summary['duration_s']}")
    return "\n".join(lines)
