"""Header (layout) and record validation of a visit report line, spec §2-§3.

Every function takes decoded text and returns plain values, so the rules are unit-tested
without a database or an SFTP server. A valid record becomes a tuple of 15 values in the
text form PostgreSQL's ``COPY`` reads (``None`` = NULL).
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

EXPECTED_HEADER = {
    0: "email",
    2: "badmail",
    3: "baja",
    4: "fecha envio",
    5: "fecha open",
    6: "opens",
    7: "opens virales",
    8: "fecha click",
    9: "clicks",
    10: "clicks virales",
    11: "links",
    12: "ips",
    13: "navegadores",
    14: "plataformas",
}
COLUMN_COUNT = 15
DISPLAY_NAMES = (
    "email",
    "column 2",
    "Badmail",
    "Baja",
    "Fecha envio",
    "Fecha open",
    "Opens",
    "Opens virales",
    "Fecha click",
    "Clicks",
    "Clicks virales",
    "Links",
    "IPs",
    "Navegadores",
    "Plataformas",
)
DATE_COLUMNS = (4, 5, 8)
INTEGER_COLUMNS = (6, 7, 9, 10)
FLAG_COLUMNS = {2: "HARD", 3: "SI"}
FLAG_ITEMS = tuple(FLAG_COLUMNS.items())
NO_VALUE = ("", "-")
MAX_INTEGER = 2_147_483_647
EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$",
    re.ASCII,
)
DATE_SHAPE = re.compile(r"^\d{2}/\d{2}/\d{4} \d{2}:\d{2}$", re.ASCII)
TRIM = " \t"


@dataclass(frozen=True)
class Rejection:
    """Why a header or a record is invalid: a stable rule id and a human message."""

    rule: str
    message: str


class LayoutError(Exception):
    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rejection = Rejection(rule, message)


def parse_csv_line(line: str) -> list[str] | None:
    """One physical line as one CSV record; ``None`` when it is not exactly one valid record."""
    if "\0" in line:
        return None
    if "\r" in line:  # a bare CR may end a record inside the line: the csv module decides
        try:
            rows = list(csv.reader((line,), strict=True))
        except csv.Error:
            return None
        return rows[0] if len(rows) == 1 else ([] if not rows else None)
    if '"' not in line:
        # Without a quote or a line break the csv module's result is exactly the comma split;
        # every line with a quote goes through the real parser.
        return line.split(",") if line else []
    try:
        return next(csv.reader((line,), strict=True), [])  # no line break: at most one record
    except csv.Error:
        return None


def normalise_header_name(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


def check_header(line: str | None) -> str:
    """Validate line 1; returns the raw column-2 header name or raises ``LayoutError``."""
    if line is None:
        raise LayoutError("layout.empty", "the file is empty: no header line")
    fields = parse_csv_line(line)
    if fields is None:
        raise LayoutError("layout.header_csv", "the header line is not a valid CSV record")
    if len(fields) != COLUMN_COUNT:
        raise LayoutError(
            "layout.column_count", f"the header has {len(fields)} columns, expected {COLUMN_COUNT}"
        )
    for position, expected in EXPECTED_HEADER.items():
        found = normalise_header_name(fields[position])
        if found != expected:
            raise LayoutError(
                "layout.header_name",
                f"header column {position + 1}: expected {expected!r}, found {fields[position]!r}",
            )
    return fields[1]


@lru_cache(maxsize=65_536)
def _timestamp_text(value: str) -> str | None:
    """``dd/mm/yyyy HH:MM`` -> ``yyyy-mm-dd HH:MM``, or ``None`` when not a real moment."""
    if not DATE_SHAPE.match(value):
        return None
    try:
        moment = datetime.strptime(value, "%d/%m/%Y %H:%M")
    except ValueError:
        return None
    return moment.strftime("%Y-%m-%d %H:%M")


@lru_cache(maxsize=65_536)
def _email_rejection(value: str) -> Rejection | None:
    local, _, _ = value.partition("@")
    if len(value) > 254 or len(local) > 64 or not EMAIL.match(value):
        return Rejection("row.email", f"email: {value!r} is not a valid e-mail address")
    return None


def validate_record(line: str, max_line_chars: int) -> tuple[str | None, ...] | Rejection:
    """Check one record in the spec's order; the first failing rule decides.

    This runs once per line of every file, so it is written for speed: no per-field calls
    where a membership test does, and caches for the values that repeat (dates, e-mails).
    """
    if len(line) > max_line_chars:
        return Rejection(
            "row.too_long", f"the line has {len(line)} characters, the limit is {max_line_chars}"
        )
    fields = parse_csv_line(line)
    if fields is None:
        return Rejection("row.csv", "the line is not one valid CSV record (quotes, delimiter or NUL)")
    if len(fields) != COLUMN_COUNT:
        return Rejection("row.field_count", f"the line has {len(fields)} fields, expected {COLUMN_COUNT}")
    values = [None if (v := field.strip(TRIM)) in NO_VALUE else v for field in fields]

    email = fields[0].strip(TRIM)
    rejection = _email_rejection(email)
    if rejection:
        return rejection
    for index in DATE_COLUMNS:
        value = values[index]
        if value is not None:
            values[index] = _timestamp_text(value)
            if values[index] is None:
                return Rejection(
                    "row.date",
                    f"{DISPLAY_NAMES[index]}: {value!r} is not a valid dd/mm/yyyy HH:MM date-time",
                )
    for index in INTEGER_COLUMNS:
        value = values[index]
        if value is not None and not (
            value.isdigit() and value.isascii() and (len(value) < 10 or int(value) <= MAX_INTEGER)
        ):
            return Rejection("row.integer", f"{DISPLAY_NAMES[index]}: {value!r} is not a valid integer")
    for index, true_value in FLAG_ITEMS:
        value = values[index]
        if value is None:
            values[index] = "f"
        elif value.upper() == true_value:
            values[index] = "t"
        else:
            return Rejection(
                "row.flag", f"{DISPLAY_NAMES[index]}: {value!r} is not one of '', '-', {true_value!r}"
            )
    values[0] = email.lower()
    return tuple(values)


def raw_line_for_errors(line: str, max_line_chars: int) -> str:
    """The decoded line as stored in ``errors.raw_line``: NUL -> U+FFFD, cut at the limit."""
    return line.replace("\0", "\ufffd")[:max_line_chars]
