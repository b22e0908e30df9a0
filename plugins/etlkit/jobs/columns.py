"""Column types of port schemas and their text form in staging files."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

TYPE_NAMES = ("string", "integer", "float", "decimal", "boolean", "date", "timestamp")
NUMERIC_TYPES = frozenset({"integer", "float", "decimal"})
REJECT_REASON_COLUMN = "_reject_reason"


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "string"
    precision: int | None = None
    scale: int | None = None
    nullable: bool = True

    def type_label(self) -> str:
        if self.type == "decimal":
            return f"decimal({self.precision},{self.scale})"
        return self.type

    def same_type(self, other: Column) -> bool:
        return (self.type, self.precision, self.scale) == (other.type, other.precision, other.scale)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "precision": self.precision, "scale": self.scale}


Schema = tuple[Column, ...]


def schema_names(schema: Schema) -> list[str]:
    return [column.name for column in schema]


def schema_fingerprint(schema: Schema) -> str:
    return ",".join(f"{c.name}:{c.type_label()}" for c in schema)


def describe_schema(schema: Schema) -> str:
    return ", ".join(f"{c.name} {c.type_label()}" for c in schema)


def encode_value(value: Any) -> Any:
    """JSON-safe form of a value for staging files; decoded again with ``decoder_for``."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot stage a {type(value).__name__}")


def _decode_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


_DECODERS = {"decimal": Decimal, "date": date.fromisoformat, "timestamp": _decode_timestamp}


def decoder_for(column: Column):
    """Callable restoring a staged value, or None when the JSON value is already the Python value."""
    return _DECODERS.get(column.type)


def arrow_type_of(type_name: str):
    """The Arrow type of a declared type that takes no parameters (not decimal), or None."""
    import pyarrow as pa

    return {
        "string": pa.string(),
        "integer": pa.int64(),
        "float": pa.float64(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "null": pa.null(),
    }.get(type_name)


def arrow_type(column: Column):
    """The Arrow type a column of this declared type has in batches and staged Parquet."""
    import pyarrow as pa

    if column.type == "decimal":
        return pa.decimal128(column.precision, column.scale)
    return arrow_type_of(column.type)


def arrow_schema(schema: Schema):
    import pyarrow as pa

    return pa.schema([pa.field(c.name, arrow_type(c)) for c in schema])


def arrow_array(values: list, kind=None):
    """``pyarrow.array`` of Python values, without importing pandas or numpy.ma.

    A plain ``pyarrow.array(list)`` asks pyarrow's pandas shim whether the list is array-like, which
    imports pandas (~70 MiB of a component's memory), unless ``arrowlib`` has had pyarrow answer that
    question once without pandas. An object ndarray, the way around it before, makes pyarrow look
    for numpy's masked arrays: ~50 ms of every component's start.
    """
    from etlkit.jobs.arrowlib import pa

    return pa.array(values, kind, from_pandas=False)
