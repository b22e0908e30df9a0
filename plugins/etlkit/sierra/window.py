"""The changes window: ``requested - overlap``, clamped to ``db_now - max_delta``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class ChangesWindow:
    requested: datetime
    start: datetime
    floor: datetime

    @property
    def clamped(self) -> bool:
        return self.start < self.floor

    @property
    def bound(self) -> datetime:
        """The effective lower bound: records updated at or after it are selected."""
        return self.floor if self.clamped else self.start

    @property
    def skipped_seconds(self) -> float:
        return (self.floor - self.start).total_seconds() if self.clamped else 0.0


def changes_window(
    requested: datetime, db_now: datetime, max_delta_minutes: float, overlap_seconds: float
) -> ChangesWindow:
    return ChangesWindow(
        requested=requested,
        start=requested - timedelta(seconds=overlap_seconds),
        floor=db_now - timedelta(minutes=max_delta_minutes),
    )


@dataclass(frozen=True)
class ClampReport:
    """Records skipped by a clamped window, counted in the extraction's snapshot."""

    seconds: float
    bib_records: int
    item_records: int
    oldest_skipped: datetime | None

    def as_summary(self) -> dict:
        return {
            "seconds": self.seconds,
            "bib_records": self.bib_records,
            "item_records": self.item_records,
            "oldest_skipped": self.oldest_skipped.isoformat() if self.oldest_skipped else None,
        }
