"""Document APIs: index and get one document, ``_mget``, ``_bulk`` (with per-item faults)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from dev.es_server.errors import SHARDS, EsError, status_error_type
from dev.es_server.state import ClusterState, Index


class DocumentsApi(ClusterState):
    def _write(self, index: Index, op: str, doc_id: str, source: bytes | None) -> tuple[int, dict[str, Any]]:
        if op == "delete":
            if doc_id not in index.docs:
                return 404, {"result": "not_found", "_version": 1}
            version = index.docs.pop(doc_id)[0] + 1
            return 200, {"result": "deleted", "_version": version}
        try:
            document = json.loads(source)
        except ValueError as exc:
            raise EsError(400, "document_parsing_exception", f"failed to parse: {exc}") from exc
        index.validate(document)
        if op == "create" and doc_id in index.docs:
            raise EsError(
                409,
                "version_conflict_engine_exception",
                f"[{doc_id}]: version conflict, document already exists (current version [{index.docs[doc_id][0]}])",
            )
        previous = index.docs.get(doc_id)
        version = previous[0] + 1 if previous else 1
        index.docs[doc_id] = (version, source)
        return (
            (200, {"result": "updated", "_version": version})
            if previous
            else (201, {"result": "created", "_version": version})
        )

    def index_document(self, target: str, doc_id: str, source: bytes, refresh: bool) -> tuple[int, dict]:
        with self.lock:
            index = self.write_index(target)
            status, result = self._write(index, "index", doc_id, source)
            if refresh:
                index.refresh()
            return status, {"_index": index.name, "_id": doc_id, "_shards": SHARDS, **result}

    def bulk(self, target: str | None, body: bytes, refresh: bool) -> dict[str, Any]:
        operations = _parse_bulk(body)
        started = time.monotonic()
        items = []
        with self.lock:
            touched: set[str] = set()
            for op, meta, source in operations:
                doc_id = str(meta.get("_id") or uuid.uuid4().hex)
                index_name = meta.get("_index") or target
                try:
                    if not index_name:
                        raise EsError(
                            400,
                            "action_request_validation_exception",
                            "Validation Failed: 1: index is missing;",
                        )
                    index = self.write_index(index_name)
                    index_name = index.name
                    injected = self.failing_ids.get(doc_id)
                    if injected and injected[1] > 0:
                        injected[1] -= 1
                        raise EsError(
                            injected[0], status_error_type(injected[0]), f"injected failure for [{doc_id}]"
                        )
                    status, result = self._write(index, op, doc_id, source)
                    touched.add(index.name)
                    items.append(
                        {
                            op: {
                                "_index": index_name,
                                "_id": doc_id,
                                **result,
                                "_shards": SHARDS,
                                "status": status,
                            }
                        }
                    )
                except EsError as exc:
                    error = {"type": exc.error_type, "reason": exc.reason, "index": index_name, **exc.extra}
                    items.append(
                        {op: {"_index": index_name, "_id": doc_id, "status": exc.status, "error": error}}
                    )
            if refresh:
                for name in touched:
                    self.indices[name].refresh()
        errors = any("error" in next(iter(item.values())) for item in items)
        return {"took": int((time.monotonic() - started) * 1000), "errors": errors, "items": items}

    def get_document(self, target: str, doc_id: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            index = self.write_index(target)
            if doc_id not in index.docs:
                return 404, {"_index": index.name, "_id": doc_id, "found": False}
            version, source = index.docs[doc_id]
            return 200, {
                "_index": index.name,
                "_id": doc_id,
                "_version": version,
                "_seq_no": version - 1,
                "_primary_term": 1,
                "found": True,
                "_source": json.loads(source),
            }

    def mget(self, target: str, body: dict[str, Any]) -> dict[str, Any]:
        if set(body) - {"ids", "docs"}:
            raise EsError(
                400, "parsing_exception", f"unsupported by this server: {sorted(set(body) - {'ids', 'docs'})}"
            )
        ids = [str(i) for i in body.get("ids", [])] + [str(d["_id"]) for d in body.get("docs", [])]
        if not ids:
            raise EsError(
                400, "action_request_validation_exception", "Validation Failed: 1: no documents to get;"
            )
        return {"docs": [self.get_document(target, doc_id)[1] for doc_id in ids]}


def _parse_bulk(body: bytes) -> list[tuple[str, dict[str, Any], bytes | None]]:
    lines = [line for line in body.split(b"\n") if line.strip()]
    operations = []
    position = 0
    while position < len(lines):
        try:
            action = json.loads(lines[position])
        except ValueError as exc:
            raise EsError(400, "x_content_parse_exception", f"[1:1] malformed action line: {exc}") from exc
        if not isinstance(action, dict) or len(action) != 1:
            raise EsError(
                400, "illegal_argument_exception", "Malformed action/metadata line, expected one action"
            )
        op, meta = next(iter(action.items()))
        if op not in {"index", "create", "delete"}:
            raise EsError(
                400,
                "illegal_argument_exception",
                f"Action/metadata line [{position + 1}] contains an unknown parameter [{op}]",
            )
        if not isinstance(meta, dict) or set(meta) - {"_index", "_id"}:
            raise EsError(
                400,
                "illegal_argument_exception",
                f"Action/metadata line [{position + 1}] has unsupported metadata",
            )
        position += 1
        source = None
        if op != "delete":
            if position >= len(lines):
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    "The bulk request must be terminated by a newline [\\n]",
                )
            source = lines[position]
            position += 1
        operations.append((op, meta, source))
    if not operations:
        raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: no requests added;")
    return operations
