"""The ``movies`` index contract: the exact creation body, physical index names, mapping comparison."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

_BODY_PATH = Path(__file__).with_name("index_body.json")
_TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"


@cache
def _body_text() -> str:
    return _BODY_PATH.read_text()


def index_body() -> dict[str, Any]:
    """A fresh copy of the §2 body ``{settings, mappings}`` every physical index is created with."""
    return json.loads(_body_text())


def index_mappings() -> dict[str, Any]:
    return index_body()["mappings"]


def physical_index_name(alias: str, now: datetime) -> str:
    return f"{alias}_{now.astimezone(UTC).strftime(_TIMESTAMP_FORMAT)}"


def is_physical_index(alias: str, name: str) -> bool:
    return re.fullmatch(re.escape(alias) + r"_\d{14}", name) is not None


def _normalise(mapping: Any) -> Any:
    """ES echoes booleans/strings as stored; compare ``"strict"``/``True`` style values as strings."""
    if isinstance(mapping, dict):
        return {key: _normalise(value) for key, value in mapping.items()}
    if isinstance(mapping, list):
        return [_normalise(value) for value in mapping]
    if isinstance(mapping, bool):
        return str(mapping).lower()
    return mapping if isinstance(mapping, str) else str(mapping)


def mappings_equal(actual: dict[str, Any]) -> bool:
    """True when an index's mappings mean exactly the §2 mappings."""
    return _normalise(copy.deepcopy(actual)) == _normalise(index_mappings())
