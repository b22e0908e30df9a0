"""The XCom form of the values job tasks hand each other (``RunContext``, ``ComponentSummary``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields
from typing import Any, Self


class XComValue:
    """For frozen dataclasses: ``to_xcom()`` is the fields as a JSON-able dict, ``from_xcom`` reads it
    back and refuses keys that are not fields (a value from another task or version)."""

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> Self:
        if unknown := set(value) - {f.name for f in fields(cls)}:  # type: ignore[arg-type]
            raise ValueError(f"not a {cls.__name__}: unknown keys {sorted(unknown)}")
        return cls(**value)
