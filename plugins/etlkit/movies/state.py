"""Run state (§4): one JSON object behind a load/save interface (kept in the Variable ``movies_etl_state``),
and the mode decision (§7)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from etlkit.common.state import VariableState
from etlkit.movies.change_keys import capped

STATE_VARIABLE = "movies_etl_state"

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="microseconds")


def from_iso(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


@dataclass(frozen=True)
class MoviesState:
    hwm: str | None = None
    last_full_refresh_at: str | None = None
    last_reconciled_at: str | None = None
    index: str | None = None

    @classmethod
    def from_json(cls, raw: str | dict | None) -> MoviesState:
        if not raw:
            return cls()
        data = raw if isinstance(raw, dict) else json.loads(raw)
        return cls(**{k: data.get(k) for k in ("hwm", "last_full_refresh_at", "last_reconciled_at", "index")})

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def after_incremental(self, max_loaded: datetime | None, ceiling: datetime | None = None) -> MoviesState:
        """New HWM = max(old HWM, largest key loaded), capped at ``ceiling`` (the source's clock at the
        snapshot); unchanged when nothing was loaded, unless a stored mark lies beyond the ceiling."""
        old = from_iso(self.hwm)
        mark = capped(max(filter(None, (old, max_loaded)), default=None), ceiling)
        return self if mark == old else replace(self, hwm=to_iso(mark))

    def after_full(
        self, max_loaded: datetime | None, index: str, now: datetime, ceiling: datetime | None = None
    ) -> MoviesState:
        return MoviesState(
            hwm=to_iso(capped(max_loaded, ceiling) or EPOCH),
            last_full_refresh_at=to_iso(now),
            last_reconciled_at=to_iso(now),
            index=index,
        )

    def after_reconcile(self, now: datetime) -> MoviesState:
        return replace(self, last_reconciled_at=to_iso(now))


class StateStore(Protocol):
    def load(self) -> MoviesState: ...

    def save(self, state: MoviesState) -> None: ...


class VariableStateStore(VariableState):
    """The run state as one JSON Variable (``movies_etl_state``); read and written inside a task."""

    def __init__(self, key: str = STATE_VARIABLE):
        super().__init__(key)

    def load(self) -> MoviesState:
        return MoviesState.from_json(self.read_text())

    def save(self, state: MoviesState) -> None:
        self.write_text(state.to_json())
        log.info("state %s saved: %s", self.key, state.to_json())


class InMemoryStateStore:
    def __init__(self, state: MoviesState | None = None):
        self.state = state or MoviesState()

    def load(self) -> MoviesState:
        return self.state

    def save(self, state: MoviesState) -> None:
        self.state = state


def lower_bound(hwm: str | None, overlap_seconds: int) -> datetime | None:
    """L = HWM − overlap; rows with a change timestamp ≥ L are read again."""
    mark = from_iso(hwm)
    return None if mark is None else mark - timedelta(seconds=overlap_seconds)


def is_due(last_at: str | None, interval: timedelta, now: datetime) -> bool:
    """An interval of zero switches the periodic action off."""
    if interval <= timedelta(0):
        return False
    last = from_iso(last_at)
    return last is None or now - last >= interval


# Target kinds found by resolving the alias name.
TARGET_MISSING = "missing"
TARGET_ALIAS = "alias"
TARGET_LEGACY = "legacy_index"


def decide_mode(
    *,
    full_refresh_param: bool,
    state: MoviesState,
    target_kind: str,
    mappings_ok: bool,
    full_refresh_interval: timedelta,
    now: datetime,
) -> tuple[str, str]:
    """(``full`` | ``incremental``, reason) following §7's list, first match wins."""
    if full_refresh_param:
        return "full", "full_refresh param"
    if target_kind == TARGET_MISSING:
        return "full", "target index missing" + ("; stored state ignored" if state.hwm else "")
    if state.hwm is None:
        return "full", "no high-water mark stored"
    if not mappings_ok:
        return "full", "target mappings differ from the contract"
    if is_due(state.last_full_refresh_at, full_refresh_interval, now):
        return "full", f"full refresh interval ({full_refresh_interval}) elapsed"
    return "incremental", f"changes since {state.hwm}"
