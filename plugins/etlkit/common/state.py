"""High-water marks kept in Airflow Variables, advanced only after the load has committed.

Usage inside a task::

    mark = VariableWatermark("movies_es_watermark")
    since = mark.read()            # None on the first run
    ... load, commit ...
    mark.advance(max_loaded)       # never now(), never before the commit

``advance`` refuses to move a watermark backwards unless ``allow_rewind=True`` (a full
refresh), so a slow rerun of an old interval cannot undo a newer run's progress.
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger(__name__)


class WatermarkRewindError(ValueError):
    pass


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


class VariableWatermark:
    def __init__(self, key: str):
        self.key = key

    def read(self, default: Any = None) -> Any:
        from airflow.sdk import Variable

        raw = Variable.get(self.key, default=None)
        if raw is None:
            return default
        return stored_value(raw, default)

    def advance(self, value: Any, *, allow_rewind: bool = False) -> None:
        from airflow.sdk import Variable

        if value is None:
            return
        current = self.read()
        if current is not None and value < current and not allow_rewind:
            raise WatermarkRewindError(f"watermark {self.key} would move back from {current!r} to {value!r}")
        Variable.set(self.key, json.dumps({"value": value}), serialize_json=False)
        log.info("watermark %s advanced from %r to %r", self.key, current, value)
