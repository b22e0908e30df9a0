"""type_conversion on whole Arrow columns, with the row converters' rules.

The common conversions of text (integer, float, decimal, boolean, date with the default format)
run as Arrow kernels after an ASCII syntax check; every other case (custom date formats, timestamps,
non-text inputs, integers of 19 digits) calls ``conversion.converter`` per value, so both paths accept
and refuse the same values. A converted column has a null where the conversion failed; ``failed``
marks those rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from etlkit.jobs.arrowlib import pa, pc
from etlkit.jobs.columns import Column, arrow_array, arrow_type
from etlkit.jobs.conversion import ConversionFailed, converter

# ASCII digits only: Python's \d also takes other scripts' digits, which no target type accepts.
INTEGER = r"^[+-]?[0-9]+$"
SHORT_INTEGER = r"^[+-]?[0-9]{1,18}$"  # fits int64 whatever the digits
FLOAT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
DATE = r"^(?P<y>[0-9]{4})-(?P<m>[0-9]{1,2})-(?P<d>[0-9]{1,2})$"
_TRUE, _FALSE = arrow_array(["true", "1", "yes"]), arrow_array(["false", "0", "no"])
_FIRST_DAY = pa.scalar(date(1, 1, 1), pa.date32())


def decimal_pattern(precision: int, scale: int) -> str:
    """Syntax of a decimal that fits decimal(precision, scale) exactly (extra places must be zeros)."""
    whole = precision - scale
    fraction = rf"(\.[0-9]{{0,{scale}}}0*)?" if scale else r"(\.0*)?"
    return rf"^[+-]?(0*[0-9]{{0,{whole}}}{fraction})$"


@dataclass
class Converted:
    values: pa.Array
    failed: pa.Array  # boolean, no nulls: the input was a value and the conversion refused it

    def first_failure(self, source: pa.Array) -> object:
        index = pc.index(self.failed, True).as_py()
        return source[index].as_py()


def _by_value(values: pa.Array, rule, target: Column) -> Converted:
    convert = converter(rule.to, rule.precision, rule.scale, rule.format, rule.timezone)
    out, failed = [], []
    for value in values.to_pylist():
        if value is None:
            out.append(None)
            failed.append(False)
            continue
        try:
            out.append(convert(value))
            failed.append(False)
        except ConversionFailed:
            out.append(None)
            failed.append(True)
    return Converted(arrow_array(out, arrow_type(target)), arrow_array(failed, pa.bool_()))


def _failed(values: pa.Array, result: pa.Array) -> pa.Array:
    return pc.and_(pc.is_valid(values), pc.is_null(result))


def _masked(values: pa.Array, valid: pa.Array) -> pa.Array:
    return pc.if_else(pc.fill_null(valid, False), values, pa.scalar(None, values.type))


def convert_column(values: pa.Array, rule, target: Column) -> Converted:
    """``values`` (already trimmed, null texts nulled) converted to ``target``'s type."""
    if not pa.types.is_string(values.type) or (rule.to == "date" and rule.format not in (None, "%Y-%m-%d")):
        return _by_value(values, rule, target)
    kind = rule.to
    if kind == "string":
        return Converted(values, pa.repeat(False, len(values)))
    if kind == "integer":
        result = _clean_integers(values)
        if result is None:
            short = pc.match_substring_regex(values, SHORT_INTEGER)
            if pc.any(pc.and_(pc.match_substring_regex(values, INTEGER), pc.invert(short))).as_py():
                return _by_value(values, rule, target)  # 19+ digits: the range check of the row converter
            result = pc.cast(pc.replace_substring_regex(_masked(values, short), r"^\+", ""), pa.int64())
    elif kind == "float":
        good = _masked(values, pc.match_substring_regex(values, FLOAT))
        result = pc.cast(good, pa.float64())
        result = _masked(result, pc.is_finite(result))
    elif kind == "decimal":
        good = _masked(values, pc.match_substring_regex(values, decimal_pattern(rule.precision, rule.scale)))
        good = _masked(good, pc.match_substring_regex(good, "[0-9]"))  # at least one digit
        good = pc.replace_substring_regex(good, r"(\.[0-9]*?)0+$", r"\1")  # zeros past the scale
        result = pc.cast(pc.cast(good, pa.decimal128(38, rule.scale)), arrow_type(target))
    elif kind == "boolean":
        lowered = pc.utf8_lower(values)
        result = pc.if_else(
            pc.is_in(lowered, value_set=_TRUE),
            True,
            pc.if_else(pc.is_in(lowered, value_set=_FALSE), False, pa.scalar(None, pa.bool_())),
        )
    elif kind == "date":
        result = _dates(values)
    else:
        return _by_value(values, rule, target)
    return Converted(result, pc.fill_null(_failed(values, result), False))


def _clean_integers(values: pa.Array) -> pa.Array | None:
    """When every text is a plain decimal integer that fits int64 (the common case), Arrow's cast
    reads them in one pass; None when one is not. The cast also reads ``0x…`` as hexadecimal, which
    the conversion refuses, so a column with an x anywhere does not try it."""
    if any(pc.any(pc.match_substring(values, x)).as_py() for x in "xX"):  # faster than ignore_case
        return None
    try:
        return pc.cast(values, pa.int64())
    except pa.ArrowInvalid:
        return None


def _dates(values: pa.Array) -> pa.Array:
    """Dates of ``YYYY-M-D`` texts, null where the text is no real day (year 0 is none, as for Python
    and PostgreSQL)."""
    days = _calendar_days(values)
    return _masked(days, pc.greater_equal(days, _FIRST_DAY))


def _calendar_days(values: pa.Array) -> pa.Array:
    """When every text is a zero-padded ISO date of a real day (the common case), Arrow's cast reads
    them in one pass; it accepts a subset of what the general path does, with the same days."""
    try:
        return pc.cast(values, pa.date32())
    except pa.ArrowInvalid:
        pass
    parts = pc.extract_regex(values, DATE)
    year, month, day = (pc.cast(pc.struct_field(parts, name), pa.int32()) for name in "ymd")
    parsed = pc.strptime(values, format="%Y-%m-%d", unit="s", error_is_null=True)
    exact = pc.and_(
        pc.and_(pc.equal(pc.year(parsed), year), pc.equal(pc.month(parsed), month)),
        pc.equal(pc.day(parsed), day),
    )
    return _masked(pc.cast(parsed, pa.date32()), exact)
