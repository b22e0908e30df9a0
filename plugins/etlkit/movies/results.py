"""The small results the movies tasks hand on (XCom), typed: ``Plan`` (plan), ``Synced`` (sync) and
``Committed`` (commit_state). ``to_xcom()`` gives the JSON-able value the task returns (its content is
what UIs, the run summary and tests read); ``from_xcom(value)`` reads it back in a downstream task."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from etlkit.common.metrics import RunMetrics

PIPELINE = "movies"


def _known(cls: type, value: Mapping[str, Any]) -> dict[str, Any]:
    return {f.name: value[f.name] for f in fields(cls)}


@dataclass(frozen=True)
class Plan:
    """What ``plan`` decided: the mode and why, the index to write, the change columns, the HWM read."""

    mode: str  # full | incremental
    reason: str
    write_index: str
    target_kind: str
    previous_index: str | None
    lower_bound: str | None
    change_columns: dict[str, str]
    hwm_before: str | None

    @property
    def full(self) -> bool:
        return self.mode == "full"

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any] | Plan) -> Plan:
        return value if isinstance(value, Plan) else cls(**_known(cls, value))


@dataclass(frozen=True)
class Synced:
    """What ``sync`` read and loaded; its XCom is the task's ``RunMetrics`` with these figures in ``extra``."""

    rows_read: int
    rows_loaded: int
    mode: str
    reason: str
    index: str
    max_key: str | None
    snapshot_at: str | None
    future_dated: int
    ignored_roles: int
    unchanged_skipped: int
    hwm_before: str | None

    def to_xcom(self) -> dict[str, Any]:
        extra = {k: v for k, v in asdict(self).items() if k not in ("rows_read", "rows_loaded")}
        return RunMetrics(
            PIPELINE, rows_read=self.rows_read, rows_loaded=self.rows_loaded, extra=extra
        ).as_xcom()

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any] | Synced) -> Synced:
        if isinstance(value, Synced):
            return value
        return cls(**_known(cls, {**value["extra"], **value}))


@dataclass(frozen=True)
class Committed:
    """The state ``commit_state`` wrote: the HWM before and after, the index behind the alias."""

    mode: str
    hwm_before: str | None
    hwm_after: str | None
    index: str | None

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any] | Committed) -> Committed:
        return value if isinstance(value, Committed) else cls(**_known(cls, value))
