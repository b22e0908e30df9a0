"""Reconciliation (§6): merge the ordered PostgreSQL and Elasticsearch id streams in constant memory."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from etlkit.common.errors import BadInputError


class StreamOrderError(BadInputError):
    """An id stream is not strictly increasing: merging it would delete the wrong documents."""


def _strictly_increasing(ids: Iterable[str], source: str) -> Iterator[str]:
    previous: str | None = None
    for value in ids:
        if previous is not None and value <= previous:
            raise StreamOrderError(f"{source} ids out of order: {value!r} after {previous!r}")
        previous = value
        yield value


def diff_sorted_ids(source_ids: Iterable[str], index_ids: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Yield ``("delete", id)`` for ids only in the index and ``("index", id)`` for ids only in the source."""
    source = _strictly_increasing(source_ids, "PostgreSQL")
    index = _strictly_increasing(index_ids, "Elasticsearch")
    left = next(source, None)
    right = next(index, None)
    while left is not None or right is not None:
        if right is None or (left is not None and left < right):
            yield "index", left
            left = next(source, None)
        elif left is None or right < left:
            yield "delete", right
            right = next(index, None)
        else:
            left = next(source, None)
            right = next(index, None)
