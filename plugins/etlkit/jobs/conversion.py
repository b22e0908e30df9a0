"""Value parsing of the type_conversion component and of JSON/SQL readers."""

from __future__ import annotations

import math
import re
import zoneinfo
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Context, Decimal
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# re.ASCII: \d would otherwise take any script's digits ("١٢"), which int() and Decimal() accept.
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)", re.ASCII)
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class ConversionFailed(ValueError):
    pass


def to_integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ConversionFailed("boolean is not an integer")
    if isinstance(value, str):
        if not _INTEGER.fullmatch(value):
            raise ConversionFailed(f"{value!r} is not an integer")
        number = int(value)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float | Decimal) and value == value and int(value) == value:
        number = int(value)
    else:
        raise ConversionFailed(f"{value!r} is not an integral number")
    if not INT64_MIN <= number <= INT64_MAX:
        raise ConversionFailed(f"{value!r} is out of the 64-bit range")
    return number


def to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ConversionFailed("boolean is not a float")
    if isinstance(value, str):
        if not _FLOAT.fullmatch(value):
            raise ConversionFailed(f"{value!r} is not a number")
        number = float(value)
    elif isinstance(value, int | float | Decimal):
        try:
            number = float(value)
        except OverflowError:
            raise ConversionFailed(f"{value!r} is out of the float range") from None
        if isinstance(value, int) and int(number) != value:
            raise ConversionFailed(f"{value!r} does not fit a float exactly")
    else:
        raise ConversionFailed(f"{value!r} is not a number")
    if not math.isfinite(number):
        raise ConversionFailed(f"{value!r} is not a finite float")
    return number


_DECIMAL_CONTEXT = Context(prec=80)


def to_decimal(value: Any, precision: int, scale: int) -> Decimal:
    if isinstance(value, bool):
        raise ConversionFailed("boolean is not a decimal")
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value):
            raise ConversionFailed(f"{value!r} is not a decimal")
        number = Decimal(value)
    elif isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, float) and value == value and abs(value) != float("inf"):
        number = Decimal(repr(value))
    else:
        raise ConversionFailed(f"{value!r} is not a decimal")
    quantized = number.quantize(Decimal(1).scaleb(-scale), context=_DECIMAL_CONTEXT)
    if quantized != number:
        raise ConversionFailed(f"{value!r} has more than {scale} decimal places")
    if abs(quantized) >= _DECIMAL_CONTEXT.power(10, precision - scale):
        raise ConversionFailed(f"{value!r} does not fit decimal({precision},{scale})")
    return quantized


def to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower() if isinstance(value, str | int) else None
    if text not in _BOOLEANS:
        raise ConversionFailed(f"{value!r} is not a boolean")
    return _BOOLEANS[text]


def to_date(value: Any, fmt: str | None = None) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise ConversionFailed(f"{value!r} is not a date")
    fmt = fmt or "%Y-%m-%d"
    if not value.isascii():  # strptime's %Y and %d take any script's digits
        raise ConversionFailed(f"{value!r} does not match {fmt}")
    try:
        if fmt == "%Y-%m-%d" and len(value) == 10 and value[4] == value[7] == "-":
            return date.fromisoformat(value)  # the common case, without strptime's per-call cost
        return datetime.strptime(value, fmt).date()
    except ValueError:
        raise ConversionFailed(f"{value!r} does not match {fmt}") from None


def to_timestamp(value: Any, timezone: str = "UTC") -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ConversionFailed(f"{value!r} is not an ISO-8601 timestamp") from None
    else:
        raise ConversionFailed(f"{value!r} is not a timestamp")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zoneinfo.ZoneInfo(timezone))
    return parsed.astimezone(UTC)


def canonical_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def to_string(value: Any) -> str:
    return value if isinstance(value, str) else canonical_text(value)


def converter(type_name: str, precision=None, scale=None, fmt=None, timezone="UTC") -> Callable[[Any], Any]:
    """A function converting a value to ``type_name``; it raises ConversionFailed on any loss."""
    if type_name == "decimal":
        return lambda value: to_decimal(value, precision, scale)
    if type_name == "date":
        return lambda value: to_date(value, fmt)
    if type_name == "timestamp":
        return lambda value: to_timestamp(value, timezone)
    return {"string": to_string, "integer": to_integer, "float": to_float, "boolean": to_boolean}[type_name]


def convert(value: Any, type_name: str, precision=None, scale=None, fmt=None, timezone="UTC") -> Any:
    return converter(type_name, precision, scale, fmt, timezone)(value)
