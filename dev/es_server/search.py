"""Search APIs: ``_count`` and ``_search`` (match_all, one keyword sort, ``search_after`` paging)."""

from __future__ import annotations

import json
from typing import Any

from dev.es_server.errors import SHARDS, EsError
from dev.es_server.state import ClusterState, Index

MAX_RESULT_WINDOW = 10_000  # index.max_result_window default


class SearchApi(ClusterState):
    def count(self, target: str, body: dict[str, Any]) -> dict[str, Any]:
        _match_all_only(body, allowed={"query"})
        with self.lock:
            total = sum(len(self.indices[n].searchable) for n in self.resolve(target))
            return {"count": total, "_shards": {**SHARDS, "skipped": 0}}

    def search(self, target: str, body: dict[str, Any]) -> dict[str, Any]:
        _match_all_only(
            body, allowed={"query", "size", "sort", "search_after", "_source", "track_total_hits"}
        )
        size = int(body.get("size", 10))
        if size > MAX_RESULT_WINDOW:  # real ES refuses this even with search_after
            raise EsError(
                400,
                "illegal_argument_exception",
                f"Result window is too large, from + size must be less than or equal to: [{MAX_RESULT_WINDOW}] "
                f"but was [{size}]. This limit can be set by changing the [index.max_result_window] index "
                "level setting.",
            )
        with_source = body.get("_source", True)
        if not isinstance(with_source, bool):
            raise EsError(400, "parsing_exception", "only _source true/false is supported")
        with self.lock:
            names = self.resolve(target)
            hits = [
                (name, doc_id, source)
                for name in names
                for doc_id, (_, source) in self.indices[name].searchable.items()
            ]
            sort_field, descending = _sort_spec(body.get("sort"), [self.indices[n] for n in names])
        total = len(hits)
        if sort_field:
            keyed = []
            for name, doc_id, source in hits:
                value = json.loads(source).get(sort_field)
                values = [v for v in (value if isinstance(value, list) else [value]) if v is not None]
                if values:
                    keyed.append(((max(values) if descending else min(values)), name, doc_id, source))
            keyed.sort(key=lambda k: (k[0].encode(), k[1]), reverse=descending)
            after = body.get("search_after")
            if after is not None:
                if not isinstance(after, list) or len(after) != 1:
                    raise EsError(
                        400, "illegal_argument_exception", "search_after must have one value per sort field"
                    )
                cut = str(after[0]).encode()
                keyed = [k for k in keyed if (k[0].encode() < cut if descending else k[0].encode() > cut)]
            page = keyed[:size]
            results = [_hit(name, doc_id, source, with_source, [key]) for key, name, doc_id, source in page]
        else:
            if body.get("search_after") is not None:
                raise EsError(400, "illegal_argument_exception", "search_after requires a sort")
            results = [_hit(name, doc_id, source, with_source, None) for name, doc_id, source in hits[:size]]
        return {
            "took": 1,
            "timed_out": False,
            "_shards": {**SHARDS, "skipped": 0},
            "hits": {"total": {"value": total, "relation": "eq"}, "max_score": None, "hits": results},
        }


def _hit(index: str, doc_id: str, source: bytes, with_source: bool, sort: list | None) -> dict[str, Any]:
    hit: dict[str, Any] = {"_index": index, "_id": doc_id, "_score": None}
    if with_source:
        hit["_source"] = json.loads(source)
    if sort is not None:
        hit["sort"] = sort
    return hit


def _match_all_only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(body) - allowed
    if unknown:
        raise EsError(400, "parsing_exception", f"unsupported by this server: [{sorted(unknown)[0]}]")
    query = body.get("query")
    if query not in (None, {"match_all": {}}):
        raise EsError(400, "parsing_exception", f"only match_all queries are supported, got {query}")


def _sort_spec(sort: Any, indices: list[Index]) -> tuple[str | None, bool]:
    if sort is None:
        return None, False
    entries = sort if isinstance(sort, list) else [sort]
    if len(entries) != 1:
        raise EsError(400, "parsing_exception", "only one sort field is supported")
    entry = entries[0]
    if isinstance(entry, str):
        field_name, _, order = entry.partition(":")
        order = order or "asc"
    elif isinstance(entry, dict) and len(entry) == 1:
        field_name, order = next(iter(entry.items()))
        order = order.get("order", "asc") if isinstance(order, dict) else order
    else:
        raise EsError(400, "parsing_exception", f"malformed sort {entry}")
    for index in indices:
        spec = index.mappings.get("properties", {}).get(field_name, {})
        if spec.get("type") != "keyword":
            raise EsError(
                400,
                "illegal_argument_exception",
                f"sorting is supported on keyword fields only: [{field_name}]",
            )
    if order not in {"asc", "desc"}:
        raise EsError(400, "parsing_exception", f"unknown sort order [{order}]")
    return field_name, order == "desc"
