"""Run state kept in Airflow Variables (``VariableState``: one JSON document per key) and timestamp
high-water marks on it, advanced only after the load has committed.

Usage inside a task::

    mark = VariableWatermark("enderturing_categories_watermark")
    since = mark.read()            # None on the first run
    ... load, commit ...
    mark.advance(max_loaded)       # never now(), never before the commit

Values are compared as instants, never as strings: ``2024-06-30T00:00:00Z``, ``...+03:00`` and a
bare ``2024-06-30 00:00:00`` (UTC wall clock) all work when set by hand. ``advance`` stores UTC
wall clock with microseconds (``2024-06-30T00:00:00.000000``) and refuses to move the mark
backwards unless ``allow_rewind=True`` (a full refresh), so a slow rerun of an old interval cannot
undo a newer run's progress.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from etlkit.common.errors import ConfigurationError

log = logging.getLogger(__name__)


class WatermarkRewindError(ConfigurationError):
    """The stored mark is newer than the one a run would write: permanent, never retried."""


def stored_value(raw: Any, default: Any = None) -> Any:
    """The value of a stored ``{"value": ...}``. A bare value, as an operator sets one by hand (an
    ISO timestamp, plain or as a JSON string), is taken as it is."""
    if isinstance(raw, dict):
        return raw.get("value", default)
    try:
        parsed = json.loads(raw)
    except ValueError:
        return raw
    return parsed.get("value", default) if isinstance(parsed, dict) else parsed


def as_instant(value: str | datetime, key: str) -> datetime:
    """A timezone-aware UTC instant; a value without an offset is UTC wall clock."""
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
    if not isinstance(moment, datetime):
        raise ConfigurationError(
            f"watermark {key}: {value!r} is not an ISO 8601 timestamp; set the Variable to e.g. "
            '{"value": "2024-06-30T00:00:00.000000"} (UTC), or delete it to start over'
        )
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso_utc(moment: datetime) -> str:
    """The stored form: UTC wall clock at full precision, without an offset."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


class VariableState:
    """A pipeline's run state as one JSON document in one Airflow Variable, kept beside the data it
    describes and written only after that data committed. Subclasses give the document its meaning."""

    def __init__(self, key: str):
        self.key = key

    def read_text(self) -> str | None:
        from airflow.sdk import Variable

        return Variable.get(self.key, default=None)

    def write_text(self, text: str) -> None:
        from airflow.sdk import Variable

        Variable.set(self.key, text, serialize_json=False)


class VariableWatermark(VariableState):
    """A timestamp high-water mark (see the module docstring)."""

    def read(self, default: Any = None) -> Any:
        """The stored timestamp as it was written (None when absent); a value that is no
        timestamp fails with the Variable's name and the expected form."""
        raw = self.read_text()
        value = default if raw is None else stored_value(raw, default)
        if value is not None and value != default:
            as_instant(value, self.key)
        return value

    def advance(self, value: str | datetime | None, *, allow_rewind: bool = False) -> None:
        if value is None:
            return
        new = as_instant(value, self.key)
        current = self.read()
        if current is not None and new < as_instant(current, self.key) and not allow_rewind:
            raise WatermarkRewindError(
                f"watermark {self.key} would move back from {current!r} to {iso_utc(new)!r}: the stored "
                "value is newer than this run's (set by hand, or by a later run). This run's data is "
                "loaded. If the stored value is right, mark this task success; to re-sync from an "
                "earlier time, set the Variable to that time by hand."
            )
        self.write_text(json.dumps({"value": iso_utc(new)}))
        log.info("watermark %s advanced from %r to %r", self.key, current, iso_utc(new))
