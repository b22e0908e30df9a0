"""Change keys seen by one extraction: the high-water mark they allow, and the films dated in the future.

A change timestamp later than the source's clock at the snapshot (a bad import, an application server with a
skewed clock) must not become the HWM: every later run would start its lower bound there and miss every
ordinary change until the clock catches up. The mark is capped at the snapshot time instead, and the
future-dated films are counted and named by id (never by content) so an operator can fix them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

FUTURE_IDS_SHOWN = 10


@dataclass
class Snapshot:
    """The source's clock when the extraction's snapshot was taken; set once the snapshot is open."""

    taken_at: datetime | None = None

    def is_future(self, key: datetime | None) -> bool:
        return key is not None and self.taken_at is not None and key > self.taken_at


def capped(mark: datetime | None, ceiling: datetime | None) -> datetime | None:
    """``mark``, but never later than ``ceiling`` (the snapshot time)."""
    if mark is None or ceiling is None:
        return mark
    return min(mark, ceiling)


@dataclass
class ChangeKeys:
    """Running maximum change key and the future-dated films of one extraction (constant memory)."""

    snapshot: Snapshot
    rows_read: int = 0
    max_key: datetime | None = None
    future_count: int = 0
    future_ids: list[str] = field(default_factory=list)

    def see(self, film_id: Any, key: datetime | None) -> None:
        self.rows_read += 1
        if key is not None and (self.max_key is None or key > self.max_key):
            self.max_key = key
        if self.snapshot.is_future(key):
            self.future_count += 1
            if len(self.future_ids) < FUTURE_IDS_SHOWN:
                self.future_ids.append(str(film_id))

    def mark(self) -> datetime | None:
        """The largest change key read, capped at the snapshot time."""
        return capped(self.max_key, self.snapshot.taken_at)

    def future_report(self) -> str | None:
        if not self.future_count:
            return None
        return (
            f"{self.future_count} film work(s) have a change timestamp after the source's clock at the snapshot "
            f"({self.snapshot.taken_at.isoformat()}); the high-water mark is capped there, and these films are "
            f"read again on every run until their timestamps are corrected or reached; "
            f"first ids: {', '.join(self.future_ids)}"
        )
