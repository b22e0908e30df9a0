"""Skip re-reads that change nothing.

The lower bound re-reads rows at or just below the HWM (§4) so that late commits are not missed. A re-read
row whose document is already indexed byte-for-byte is not written again: a run with no changes indexes
nothing, while a late commit with an old timestamp still reaches the index because its document differs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from etlkit.movies.change_keys import Snapshot
from etlkit.movies.transform import FilmRow

Pair = tuple[FilmRow, dict[str, Any]]


def drop_unchanged_overlap(
    pairs: Iterable[Pair],
    boundary: datetime | None,
    fetch_sources: Callable[[list[str]], dict[str, dict[str, Any]]],
    batch_size: int,
    counts: dict[str, int],
    snapshot: Snapshot | None = None,
) -> Iterator[Pair]:
    """Pass through (row, document) pairs, dropping those with a change key ≤ ``boundary`` whose indexed
    ``_source`` equals the new document. ``fetch_sources(ids)`` returns ``{id: _source}`` of indexed ones.

    Rows dated after the ``snapshot`` time are re-read by every run (the HWM is capped below them), so they
    are compared with the index too instead of being written again each time."""
    pending: list[Pair] = []

    def flush() -> Iterator[Pair]:
        if not pending:
            return
        indexed = fetch_sources([document["id"] for _, document in pending])
        for row, document in pending:
            if indexed.get(document["id"]) == document:
                counts["unchanged"] = counts.get("unchanged", 0) + 1
            else:
                yield row, document
        pending.clear()

    for row, document in pairs:
        in_overlap = boundary is not None and (row.change_key is None or row.change_key <= boundary)
        if not (in_overlap or (snapshot is not None and snapshot.is_future(row.change_key))):
            yield from flush()
            yield row, document
            continue
        pending.append((row, document))
        if len(pending) >= batch_size:
            yield from flush()
    if pending:
        yield from flush()
