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
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow.csv as pacsv

from etlkit.jobs.arrowlib import pa

# ~11,000 rows of the orders benchmark; 1 MiB blocks cost its fused run 11 MiB more peak.
BLOCK_BYTES = 1 << 19
BOM = b"\xef\xbb\xbf"
_BLANK_AFTER_NEWLINE = re.compile(rb"\n(?=(\r?\n))")  # group 1: the blank line after a line end


@dataclass
class BadLine:
    line: int
    reason: str


@dataclass
class LineGuard:
    """Line-aligned blocks of the CSV without its blank and unbalanced-quote lines (see module doc)."""

    source: object  # a pyarrow input stream (decompressed already)
    removed: list[int] = field(default_factory=list)  # physical line numbers taken out, ascending
    bad: list[BadLine] = field(default_factory=list)  # not yet reported
    lines: int = 0  # physical lines passed through or removed so far
    kept: int = 0  # lines passed through so far (the header included)
    _pending: bytes = b""
    _started: bool = False

    def _read(self) -> bytes:
        chunk = self.source.read(BLOCK_BYTES)
        if not self._started:
            self._started = True
            chunk = chunk.removeprefix(BOM)
        return chunk

    def header_line(self) -> bytes | None:
        """The first line (without its line end), taken out of the stream; None for an empty file."""
        while b"\n" not in self._pending:
            chunk = self._read()
            if not chunk:
                break
            self._pending += chunk
        if not self._pending:
            return None
        line, _, self._pending = self._pending.partition(b"\n")
        self.lines, self.kept = 1, 1
        return line.rstrip(b"\r")

    def blocks(self) -> Iterator[bytes]:
        """Cleaned blocks ending at a line end; ``kept`` counts the lines before the block yielded."""
        while True:
            chunk = self._read()
            if not chunk:
                data, self._pending = self._pending, b""
                if data and not data.endswith(b"\n"):
                    data += b"\n"
            else:
                data = self._pending + chunk
                cut = data.rfind(b"\n") + 1
                data, self._pending = data[:cut], data[cut:]
            if data:
                block = self._clean(data)
                if block:
                    yield block
                    self.kept += block.count(b"\n")
            if not chunk:
                return

    def _clean(self, block: bytes) -> bytes:
        spans = [(start, end, "blank line") for start, end in _blank_lines(block)]
        spans += [
            (start, end, "unbalanced quote (a quoted value may not span lines)")
            for start, end in _unbalanced_quote_lines(block)
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


def _blank_lines(block: bytes) -> list[tuple[int, int]]:
    """Spans of the empty (or lone ``\\r``) lines of a block that starts and ends at a line end.

    Found from the fast substring searches; a regular expression tried at every position of the
    block held the GIL for ~1.5 s per million rows."""
    spans = []
    if block.startswith((b"\n", b"\r\n")):
        spans.append((0, block.index(b"\n") + 1))
    if b"\n\n" in block or b"\n\r\n" in block:
        spans += [match.span(1) for match in _BLANK_AFTER_NEWLINE.finditer(block)]
    return spans


def _unbalanced_quote_lines(block: bytes) -> list[tuple[int, int]]:
    """Spans of the lines with an odd number of quote characters, visiting only lines that have one."""
    spans = []
    quote = block.find(b'"')
    while quote != -1:
        start = block.rfind(b"\n", 0, quote) + 1
        end = block.find(b"\n", quote) + 1 or len(block)
        if block.count(b'"', start, end) % 2:
            spans.append((start, end))
        quote = block.find(b'"', end)
    return spans


@dataclass
class InvalidRows:
    """Rows the parser refused (wrong field count), collected by the handler while a block is parsed."""

    guard: LineGuard
    width: int
    keep_extra: bool  # no header and extra_columns=ignore: a longer row keeps its first fields
    delimiter: str
    problems: list[tuple[int, str]] = field(default_factory=list)  # (physical line, reason)
    kept: list[list[str]] = field(default_factory=list)

    def __call__(self, row) -> str:
        if self.keep_extra and row.actual_columns > self.width:
            self.kept.append(next(csv.reader([row.text], delimiter=self.delimiter))[: self.width])
        else:
            line = self.guard.physical_line(self.guard.kept + row.number)
            self.problems.append((line, f"expected {self.width} fields, got {row.actual_columns}"))
        return "skip"


def guarded_batches(
    guard: LineGuard, names: list[str], handler: InvalidRows, delimiter: str, null_values: list[str]
) -> Iterator[pa.RecordBatch]:
    """Batches of all-string columns named ``names`` (header already taken), one parse per block.

    Each block is parsed on its own and synchronously: pyarrow's streaming reader reads ahead and
    holds several times more memory for no gain in speed here.
    """
    parse = pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=handler, newlines_in_values=False)
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in names},
        null_values=null_values,
        strings_can_be_null=bool(null_values),
        quoted_strings_can_be_null=bool(null_values),
    )
    for block in guard.blocks():
        read = pacsv.ReadOptions(column_names=names, use_threads=False, block_size=len(block) + 1)
        table = pacsv.read_csv(
            pa.BufferReader(block), read_options=read, parse_options=parse, convert_options=convert
        )
        yield from table.to_batches()
