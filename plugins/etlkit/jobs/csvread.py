"""read_csv on pyarrow's streaming CSV reader, strict about lines.

pyarrow's parser skips blank lines and lets a quote run over line ends (even with
``newlines_in_values=False`` inside one block). ``LineGuard`` sits between the file and the parser:
it takes out blank lines and lines with an odd number of quote characters (an unbalanced quote, or a
quoted value spanning lines) and records them with their physical line numbers, so every bad line
becomes a reject or an error with its reason and line, and one physical line is one record.
"""

from __future__ import annotations

import bisect
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.csv as pacsv

BLOCK_BYTES = 1 << 22
BOM = b"\xef\xbb\xbf"
_QUOTED_LINE = re.compile(rb'[^\n]*"[^\n]*\n')
_BLANK_LINE = re.compile(rb"(?:(?<=\n)|^)\r?\n")


@dataclass
class BadLine:
    line: int
    reason: str


@dataclass
class LineGuard(io.RawIOBase):
    """A binary stream of the CSV without its blank and unbalanced-quote lines (see module doc)."""

    source: object  # a pyarrow input stream (decompressed already)
    removed: list[int] = field(default_factory=list)  # physical line numbers taken out, ascending
    bad: list[BadLine] = field(default_factory=list)  # not yet reported
    lines: int = 0  # physical lines passed through or removed so far
    _pending: bytes = b""
    _out: memoryview = memoryview(b"")
    _eof: bool = False
    _started: bool = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._out and not self._eof:
            self._fill()
        size = min(len(buffer), len(self._out))
        buffer[:size] = self._out[:size]
        self._out = self._out[size:]
        return size

    def header_line(self) -> bytes | None:
        """The first line (without its line end), taken out of the stream; None for an empty file."""
        while b"\n" not in bytes(self._out) and not self._eof:
            self._fill()
        data = bytes(self._out)
        if not data:
            return None
        end = data.find(b"\n")
        line, rest = (data, b"") if end < 0 else (data[:end], data[end + 1 :])
        self._out = memoryview(rest)
        return line.rstrip(b"\r")

    def _fill(self) -> None:
        chunk = self.source.read(BLOCK_BYTES)
        if not self._started:
            self._started = True
            chunk = chunk.removeprefix(BOM)
        if not chunk:
            self._eof = True
            data, self._pending = self._pending, b""
            if data and not data.endswith(b"\n"):
                data += b"\n"
        else:
            data = self._pending + chunk
            cut = data.rfind(b"\n") + 1
            data, self._pending = data[:cut], data[cut:]
        if data:
            cleaned = self._clean(data)
            self._out = memoryview(bytes(self._out) + cleaned if self._out else cleaned)

    def _clean(self, block: bytes) -> bytes:
        spans = [(m.start(), m.end(), "blank line") for m in _BLANK_LINE.finditer(block)]
        if b'"' in block:
            spans += [
                (m.start(), m.end(), "unbalanced quote (a quoted value may not span lines)")
                for m in _QUOTED_LINE.finditer(block)
                if m.group().count(b'"') % 2
            ]
        first_line = self.lines
        self.lines += block.count(b"\n")
        if not spans:
            return block
        spans.sort()
        kept, position = [], 0
        for start, end, reason in spans:
            number = first_line + block.count(b"\n", 0, start) + 1
            self.removed.append(number)
            self.bad.append(BadLine(number, reason))
            kept.append(block[position:start])
            position = end
        kept.append(block[position:])
        return b"".join(kept)

    def physical_line(self, kept_line: int) -> int:
        """The file line of the ``kept_line``-th line that passed the guard (1-based, header included)."""
        line = kept_line
        while (shifted := kept_line + bisect.bisect_right(self.removed, line)) != line:
            line = shifted
        return line


@dataclass
class InvalidRows:
    """Rows the parser refused (wrong field count), collected by the handler during a read."""

    width: int
    keep_extra: bool  # no header and extra_columns=ignore: a longer row keeps its first fields
    delimiter: str
    problems: list[tuple[int, str]] = field(default_factory=list)
    kept: list[list[str]] = field(default_factory=list)

    def __call__(self, row) -> str:
        if self.keep_extra and row.actual_columns > self.width:
            self.kept.append(next(csv.reader([row.text], delimiter=self.delimiter))[: self.width])
        else:
            self.problems.append((row.number, f"expected {self.width} fields, got {row.actual_columns}"))
        return "skip"


def open_batches(
    guard: LineGuard,
    names: list[str],
    handler: InvalidRows,
    delimiter: str,
    null_values: list[str],
    block_size: int,
) -> Iterator[pa.RecordBatch]:
    """Batches of all-string columns named ``names`` from the guarded stream (header already taken)."""
    reader = pacsv.open_csv(
        guard,
        read_options=pacsv.ReadOptions(column_names=names, use_threads=False, block_size=block_size),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter, invalid_row_handler=handler, newlines_in_values=False
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            null_values=null_values,
            strings_can_be_null=bool(null_values),
            quoted_strings_can_be_null=bool(null_values),
        ),
    )
    yield from reader
