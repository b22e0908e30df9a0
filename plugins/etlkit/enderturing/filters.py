"""Listing windows, passes and the ``filters`` mini-language of ``GET /sessions`` (spec §1.5, §4)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import quote

SEPARATOR = "\u00b1"  # ±
MANUAL_SCORES = "is_scored,manual"
CATEGORY_CHUNK = 50
LAST_MINUTE = 23 * 60 + 59
NOON = 12 * 60


@dataclass(frozen=True)
class Window:
    """Minutes ``start``..``end`` of ``day``, both inclusive (the end minute includes its seconds)."""

    day: date
    start: int
    end: int

    def split(self) -> tuple[Window, Window]:
        middle = (self.start + self.end) // 2
        return Window(self.day, self.start, middle), Window(self.day, middle + 1, self.end)

    @property
    def is_single_minute(self) -> bool:
        return self.start >= self.end

    @property
    def date_range(self) -> str:
        day = self.day.isoformat()
        return f"date_range,{day},{day}||{_hhmm(self.start)},{_hhmm(self.end)}"

    @property
    def label(self) -> str:
        return (
            f"{self.day.isoformat()}_{_hhmm(self.start).replace(':', '')}-{_hhmm(self.end).replace(':', '')}"
        )


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def day_windows(day: date) -> list[Window]:
    return [Window(day, 0, NOON), Window(day, NOON + 1, LAST_MINUTE)]


def expression(window: Window, extra_filter: str | None = None) -> str:
    return window.date_range if not extra_filter else f"{window.date_range}{SEPARATOR}{extra_filter}"


def encode(expression_text: str) -> str:
    """Percent-encode every byte that is not unreserved, exactly once."""
    return quote(expression_text.encode("utf-8"), safe="")


def categories_filter(category_ids: Iterable[int]) -> str:
    ids = list(category_ids)
    if not ids:
        raise ValueError("an empty category list is never sent")
    return "categories," + ",".join(str(i) for i in ids) + "|or"


@dataclass(frozen=True)
class Pass:
    name: str
    days: tuple[date, ...]
    extra_filter: str | None = None

    def windows(self) -> list[Window]:
        return [window for day in self.days for window in day_windows(day)]


RESYNC_RUN_TYPES = ("scheduled", "manual")


def resync_applies(run_type: str, run_resync: bool) -> bool:
    """Re-sync passes run for scheduled and manual runs only (never for backfills)."""
    return run_resync and run_type in RESYNC_RUN_TYPES


def plan_passes(
    day: date, *, resync: bool, lookback_days: int, changed_category_ids: list[int]
) -> list[Pass]:
    """The main pass for ``day``; with ``resync``, manual scores and changed categories over D−N…D."""
    passes = [Pass("main", (day,))]
    if not resync:
        return passes
    days = tuple(day - timedelta(days=offset) for offset in range(lookback_days, -1, -1))
    passes.append(Pass("manual_scores", days, MANUAL_SCORES))
    ids = sorted(changed_category_ids)
    for chunk_no, start in enumerate(range(0, len(ids), CATEGORY_CHUNK)):
        passes.append(
            Pass(f"categories_{chunk_no}", days, categories_filter(ids[start : start + CATEGORY_CHUNK]))
        )
    return passes
