"""The Elasticsearch side, for any elasticsearch-py client: resolve the alias, create physical indices,
swap the alias atomically, sweep old indices, and page document ids for reconciliation."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from etlkit.common.errors import ConfigurationError, TransientError
from etlkit.movies.index import index_body, is_physical_index, mappings_equal, physical_index_name
from etlkit.movies.state import TARGET_ALIAS, TARGET_LEGACY, TARGET_MISSING

log = logging.getLogger(__name__)
# Elasticsearch refuses a page larger than index.max_result_window (10,000 by default), search_after or not.
MAX_RESULT_WINDOW = 10_000
# Names tried for a new physical index within one try: the clock's second and the ones after it.
NAME_CANDIDATES = 3


class AliasOverSeveralIndices(ConfigurationError):
    """The alias must point to exactly one index; an operator has to fix this by hand."""


@dataclass(frozen=True)
class Target:
    kind: str  # TARGET_MISSING | TARGET_ALIAS | TARGET_LEGACY
    index: str | None  # the concrete index behind the name
    mappings_ok: bool


def _not_found(exc: Exception) -> bool:
    return (
        getattr(exc, "status_code", None) == 404 or getattr(getattr(exc, "meta", None), "status", None) == 404
    )


def resolve_target(client: Any, alias: str) -> Target:
    """What ``alias`` is now: missing, an alias to one index, or a legacy concrete index."""
    try:
        found = client.indices.get(index=alias).body
    except Exception as exc:
        if _not_found(exc):
            return Target(TARGET_MISSING, None, False)
        raise
    if alias in found:
        return Target(TARGET_LEGACY, alias, mappings_equal(found[alias].get("mappings", {})))
    if len(found) != 1:
        raise AliasOverSeveralIndices(f"alias {alias!r} points to several indices: {sorted(found)}")
    ((index, description),) = found.items()
    return Target(TARGET_ALIAS, index, mappings_equal(description.get("mappings", {})))


def create_physical_index(client: Any, name: str) -> None:
    body = index_body()
    client.indices.create(index=name, settings=body["settings"], mappings=body["mappings"])
    log.info("created index %s with the contract's settings and strict mappings", name)


class IndexNameTaken(TransientError):
    """Every candidate name of the new physical index exists: the task's retry starts from a later clock."""


def _already_exists(exc: Exception) -> bool:
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "meta", None), "status", None)
    return status == 400 and getattr(exc, "error", None) == "resource_already_exists_exception"


def create_new_physical_index(client: Any, alias: str, now: datetime) -> str:
    """Create ``<alias>_<UTC yyyymmddHHMMSS>`` for ``now``; if that name is taken (an earlier try created
    it, or two tries within one second), the next second's name, up to ``NAME_CANDIDATES`` names in all.
    A taken index is never reused: it may hold another try's documents, and publish's sweep removes it."""
    for step in range(NAME_CANDIDATES):
        name = physical_index_name(alias, now + timedelta(seconds=step))
        try:
            create_physical_index(client, name)
        except Exception as exc:
            if not _already_exists(exc):
                raise
            log.warning("index %s already exists: trying the next second's name", name)
            continue
        return name
    raise IndexNameTaken(
        f"the {NAME_CANDIDATES} index names from {physical_index_name(alias, now)} on all exist; "
        "the task's retry picks names from its own, later clock"
    )


def recreate_physical_index(client: Any, name: str) -> None:
    """Drop and create a not yet published index, so a retried full sync starts from nothing."""
    client.indices.delete(index=name, ignore_unavailable=True)
    create_physical_index(client, name)


def alias_members(client: Any, alias: str) -> list[str]:
    try:
        return sorted(client.indices.get_alias(name=alias).body)
    except Exception as exc:
        if _not_found(exc):
            return []
        raise


def swap_alias(client: Any, alias: str, new_index: str) -> dict[str, Any]:
    """Point ``alias`` at ``new_index`` in one atomic ``_aliases`` request; returns what it replaced.

    A legacy concrete index named like the alias is removed by the same request (``remove_index``).
    """
    current = alias_members(client, alias)
    legacy = not current and client.indices.exists(index=alias).body
    if current == [new_index]:
        return {"previous": None, "legacy": False, "swapped": False}
    actions: list[dict[str, Any]] = [{"remove": {"index": index, "alias": alias}} for index in current]
    if legacy:
        actions.append({"remove_index": {"index": alias}})
    actions.append({"add": {"index": new_index, "alias": alias}})
    client.indices.update_aliases(actions=actions)
    previous = current[0] if len(current) == 1 else None
    log.info(
        "alias %s now -> %s (was %s%s)",
        alias,
        new_index,
        current or "-",
        ", legacy index dropped" if legacy else "",
    )
    return {"previous": previous, "legacy": bool(legacy), "swapped": True}


def sweep_old_indices(client: Any, alias: str, keep: set[str]) -> list[str]:
    """Delete every ``<alias>_<14 digits>`` index not in ``keep`` (half-built ones included)."""
    try:
        names = sorted(client.indices.get(index=f"{alias}_*").body)
    except Exception as exc:
        if _not_found(exc):
            return []
        raise
    doomed = [name for name in names if is_physical_index(alias, name) and name not in keep]
    for name in doomed:
        client.indices.delete(index=name)
        log.info("deleted old index %s", name)
    return doomed


def stream_index_ids(client: Any, target: str, page_size: int) -> Iterator[str]:
    """Every document id, ascending, paged with ``search_after`` (constant memory)."""
    page_size = min(page_size, MAX_RESULT_WINDOW)
    after: list[Any] | None = None
    while True:
        kwargs: dict[str, Any] = {"search_after": after} if after is not None else {}
        response = client.search(
            index=target,
            query={"match_all": {}},
            source=False,
            sort=[{"id": "asc"}],
            size=page_size,
            **kwargs,
        )
        hits = response["hits"]["hits"]
        for hit in hits:
            yield hit["_id"]
        if len(hits) < page_size:
            return
        after = hits[-1]["sort"]
