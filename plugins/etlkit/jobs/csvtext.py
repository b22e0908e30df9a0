"""CSV text of Arrow batches, built with Arrow kernels: write_csv files and write_sql's COPY.

Fields are quoted only when needed (as Python's csv.QUOTE_MINIMAL does), so files read the same
as before. Values take their canonical text (``conversion.canonical_text``); the kernels' text of
floats and timestamps differs from Python's, so those columns are formatted per value for files.
"""

from __future__ import annotations

import re

from etlkit.jobs.arrowlib import pa, pc
from etlkit.jobs.columns import arrow_array
from etlkit.jobs.conversion import canonical_text


def _quoted(values: pa.Array, delimiter: str, quote_empty: bool) -> pa.Array:
    special = f'["\r\n{re.escape(delimiter)}]'
    needs = pc.match_substring_regex(values, special)
    if quote_empty:  # COPY … CSV reads an unquoted empty field as NULL
        needs = pc.or_(needs, pc.equal(pc.utf8_length(values), 0))
    escaped = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
    return pc.if_else(needs, escaped, values)


def _text(values: pa.Array, for_copy: bool) -> pa.Array:
    kind = values.type
    if pa.types.is_string(kind):
        return values
    if not for_copy and (pa.types.is_floating(kind) or pa.types.is_timestamp(kind)):
        return arrow_array(
            [None if v is None else canonical_text(v) for v in values.to_pylist()], pa.string()
        )
    return pc.cast(values, pa.string())


def csv_bytes(
    batch: pa.RecordBatch, delimiter: str = ",", null_text: str = "", for_copy: bool = False
) -> memoryview:
    """The rows of ``batch`` as CSV lines ending in a newline; nulls as ``null_text`` (unquoted).

    A view of the joined lines in Arrow's own buffer (it keeps the buffer alive): no copy of the text
    is made for the file or the COPY it is written to."""
    if batch.num_rows == 0:
        return memoryview(b"")
    fields = []
    for column in batch.columns:
        text = _text(column, for_copy)
        if pa.types.is_string(column.type):
            text = _quoted(text, delimiter, quote_empty=for_copy)
        fields.append(pc.fill_null(text, null_text))
    if not fields:
        return memoryview(b"\n" * batch.num_rows)
    fields[-1] = pc.binary_join_element_wise(fields[-1], pa.scalar(""), "\n")  # each line ends in a newline
    lines = pc.binary_join_element_wise(*fields, delimiter)
    # The lines lie back to back in the data buffer: one slice of it is the whole text.
    _, offsets, data = lines.buffers()
    positions = memoryview(offsets).cast("i")
    start, end = positions[lines.offset], positions[lines.offset + len(lines)]
    return memoryview(data)[start:end]
