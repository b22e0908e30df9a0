"""A local HTTP server speaking the subset of the Elasticsearch REST API the movies DAG uses.

Standard library only, in-memory state, faithful enough for the official Python client to work against it
unchanged (product header, ES-shaped errors, compatibility-header checks of an emulated major version).
Strict mappings and field types are enforced like Elasticsearch does; anything outside the subset answers
400 so a gap shows up as a failure, never as silent acceptance. Failure switches (``fail_next``,
``fail_ids``, ``go_down``/``come_up``) let tests inject the faults the pipeline must survive.

Run standalone for the demo or the benchmark: ``python -m dev.es_server --port 9200 --major 8``.
"""

from __future__ import annotations

import argparse
import base64
import collections
import copy
import fnmatch
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_NUMERIC_PARAMS = {"type", "index", "doc_values", "store", "null_value", "coerce", "ignore_malformed", "meta"}
# Field types of the subset and the mapping parameters Elasticsearch accepts on each.
MAPPING_PARAMS: dict[str, set[str]] = {
    "keyword": {
        "type",
        "index",
        "doc_values",
        "store",
        "null_value",
        "ignore_above",
        "normalizer",
        "fields",
        "meta",
    },
    "text": {
        "type",
        "index",
        "store",
        "norms",
        "analyzer",
        "search_analyzer",
        "search_quote_analyzer",
        "fields",
        "index_options",
        "position_increment_gap",
        "fielddata",
        "similarity",
        "meta",
    },
    "float": _NUMERIC_PARAMS,
    "double": _NUMERIC_PARAMS,
    "integer": _NUMERIC_PARAMS,
    "long": _NUMERIC_PARAMS,
    "boolean": {"type", "index", "doc_values", "store", "null_value", "meta"},
    "date": {"type", "index", "doc_values", "store", "null_value", "format", "ignore_malformed", "meta"},
    "nested": {"type", "properties", "dynamic", "include_in_parent", "include_in_root"},
    "object": {"type", "properties", "dynamic", "enabled"},
}
SUPPORTED_TYPES = set(MAPPING_PARAMS)
# Built-in analysis components the subset knows (a small part of Elasticsearch's list).
BUILTIN_ANALYZERS = {"standard", "simple", "whitespace", "stop", "keyword", "english", "russian"}
BUILTIN_TOKENIZERS = {"standard", "whitespace", "keyword", "letter", "classic"}
BUILTIN_FILTERS = {"lowercase", "uppercase", "asciifolding", "trim", "unique", "stop", "porter_stem"}
FILTER_TYPES = {"stop", "stemmer", "lowercase", "asciifolding", "synonym", "length", "unique"}
STEMMER_LANGUAGES = {
    "english",
    "light_english",
    "minimal_english",
    "possessive_english",
    "porter2",
    "lovins",
    "russian",
    "light_russian",
    "german",
    "french",
    "spanish",
    "finnish",
    "swedish",
}
STOPWORD_LISTS = {"_none_", "_english_", "_russian_", "_german_", "_french_", "_spanish_", "_finnish_"}
MAX_RESULT_WINDOW = 10_000  # index.max_result_window default
_COMPAT_RE = re.compile(r"compatible-with=(\d+)")
_INVALID_NAME_CHARS = set(' "*\\<|,>/?#:')
_SHARDS = {"total": 1, "successful": 1, "failed": 0}


class EsError(Exception):
    def __init__(self, status: int, error_type: str, reason: str, **extra: Any):
        super().__init__(reason)
        self.status, self.error_type, self.reason, self.extra = status, error_type, reason, extra

    def body(self) -> dict[str, Any]:
        cause = {"type": self.error_type, "reason": self.reason, **self.extra}
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}


@dataclass
class Index:
    name: str
    settings: dict[str, Any]
    mappings: dict[str, Any]
    uuid: str = field(default_factory=lambda: uuid.uuid4().hex[:22])
    validate: Validator = field(repr=False, default=lambda source: None)
    docs: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # realtime: id -> (version, source)
    searchable: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # as of the last refresh

    def refresh(self) -> None:
        self.searchable = dict(self.docs)


# ----------------------------------------------------------------------------------------------------------
# Mapping validation


def _check_analysis(analysis: dict[str, Any]) -> set[str]:
    """Refuse what Elasticsearch refuses in ``settings.analysis``; returns the analyzers it defines."""
    filters = analysis.get("filter") or {}
    for name, spec in filters.items():
        kind = spec.get("type")
        if kind not in FILTER_TYPES:
            raise EsError(400, "illegal_argument_exception", f"Unknown filter type [{kind}] for [{name}]")
        if kind == "stemmer" and spec.get("language", "english") not in STEMMER_LANGUAGES:
            raise EsError(
                400, "illegal_argument_exception", f"Unknown Stemmer language [{spec.get('language')}]"
            )
        stopwords = spec.get("stopwords")
        if kind == "stop" and isinstance(stopwords, str) and stopwords not in STOPWORD_LISTS:
            raise EsError(400, "illegal_argument_exception", f"unknown stopwords list [{stopwords}]")
    tokenizers = set(analysis.get("tokenizer") or {}) | BUILTIN_TOKENIZERS
    for name, spec in (analysis.get("analyzer") or {}).items():
        if spec.get("type", "custom") != "custom":
            continue
        tokenizer = spec.get("tokenizer")
        if tokenizer not in tokenizers:
            raise EsError(
                400,
                "illegal_argument_exception",
                f"Custom Analyzer [{name}] failed to find tokenizer under name [{tokenizer}]",
            )
        for filter_name in spec.get("filter") or []:
            if filter_name not in filters and filter_name not in BUILTIN_FILTERS:
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    f"Custom Analyzer [{name}] failed to find filter under name [{filter_name}]",
                )
    return set(analysis.get("analyzer") or {}) | BUILTIN_ANALYZERS


def _check_mapping_definition(properties: dict[str, Any], analyzers: set[str], path: str = "") -> None:
    for name, spec in properties.items():
        field_path = f"{path}{name}"
        kind = spec.get("type", "object" if "properties" in spec else None)
        if kind not in SUPPORTED_TYPES:
            raise EsError(
                400,
                "mapper_parsing_exception",
                f"No handler for type [{kind}] declared on field [{field_path}]",
            )
        unknown = sorted(set(spec) - MAPPING_PARAMS[kind])
        if unknown:
            raise EsError(
                400,
                "mapper_parsing_exception",
                f"unknown parameter [{unknown[0]}] on mapper [{field_path}] of type [{kind}]",
            )
        for key in ("analyzer", "search_analyzer", "search_quote_analyzer"):
            if key in spec and spec[key] not in analyzers:
                raise EsError(
                    400,
                    "mapper_parsing_exception",
                    f"Failed to parse mapping: analyzer [{spec[key]}] has not been configured in mappings",
                )
        if kind in {"nested", "object"}:
            _check_mapping_definition(spec.get("properties", {}), analyzers, f"{field_path}.")
        _check_mapping_definition(spec.get("fields", {}), analyzers, f"{field_path}.")


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    if isinstance(value, str):
        try:
            float(value)
            return True
        except ValueError:
            return False
    return False


def _is_whole_number(value: Any) -> bool:
    return _is_number(value) and float(value) == int(float(value))


_SCALAR_CHECKS: dict[str, Callable[[Any], bool]] = {
    "keyword": lambda v: isinstance(v, str),
    "text": lambda v: isinstance(v, str),
    "float": _is_number,
    "double": _is_number,
    "integer": _is_whole_number,
    "long": _is_whole_number,
    "boolean": lambda v: isinstance(v, bool) or v in {"true", "false"},
    "date": lambda v: isinstance(v, str | int) and not isinstance(v, bool),
}

Validator = Callable[[Any], None]


def compile_mapping(properties: dict[str, Any], dynamic: str, prefix: str = "") -> Validator:
    """A function raising ``EsError`` like Elasticsearch for a document that does not fit the mapping.

    Compiled once per index, so each document costs one walk over its own fields."""
    fields = {name: _compile_field(spec, dynamic, f"{prefix}{name}") for name, spec in properties.items()}
    within = prefix[:-1] if prefix else "_doc"

    def validate(source: Any) -> None:
        if not isinstance(source, dict):
            raise EsError(
                400, "document_parsing_exception", "failed to parse, document is empty or not an object"
            )
        for key, value in source.items():
            check = fields.get(key)
            if check is None:
                if dynamic == "strict":
                    raise EsError(
                        400,
                        "strict_dynamic_mapping_exception",
                        f"[1:2] mapping set to strict, dynamic introduction of [{key}] within [{within}] "
                        "is not allowed",
                    )
                raise EsError(
                    400, "illegal_argument_exception", f"dynamic mapping of [{prefix}{key}] is not supported"
                )
            if value is not None:
                check(value)

    return validate


def _compile_field(spec: dict[str, Any], dynamic: str, path: str) -> Validator:
    kind = spec.get("type", "object" if "properties" in spec else None)
    if kind in {"nested", "object"}:
        inner = compile_mapping(spec.get("properties", {}), str(spec.get("dynamic", dynamic)), f"{path}.")

        def check_object(value: Any) -> None:
            for element in value if isinstance(value, list) else (value,):
                if isinstance(element, list):
                    check_object(element)
                elif isinstance(element, dict):
                    inner(element)
                elif element is not None:
                    raise EsError(
                        400,
                        "document_parsing_exception",
                        f"object mapping for [{path}] tried to parse field [{path}] as object, but found a "
                        "concrete value",
                    )

        return check_object
    accepts = _SCALAR_CHECKS[kind]

    def check_scalar(value: Any) -> None:
        for element in value if isinstance(value, list) else (value,):
            if element is None:
                continue
            if isinstance(element, list):
                check_scalar(element)
            elif not accepts(element):
                raise EsError(
                    400,
                    "document_parsing_exception",
                    f"failed to parse field [{path}] of type [{kind}] in document. "
                    f"Preview of field's value: '{element}'",
                )

    if kind not in {"keyword", "text"}:
        return check_scalar

    def check_strings(value: Any) -> None:
        if isinstance(value, str) or (isinstance(value, list) and all(isinstance(e, str) for e in value)):
            return
        check_scalar(value)  # nulls, nested arrays, or an error to report

    return check_strings


# ----------------------------------------------------------------------------------------------------------
# Cluster state


class Cluster:
    """In-memory indices and aliases; every public method holds the lock, so requests are atomic."""

    def __init__(self, major: int = 8):
        self.major = major
        self.version = {8: "8.15.0", 9: "9.1.0"}.get(major, f"{major}.0.0")
        self.indices: dict[str, Index] = {}
        self.aliases: dict[str, set[str]] = {}
        self.lock = threading.RLock()
        self.failures: dict[str, collections.deque[int]] = {}
        self.failing_ids: dict[str, list[int]] = {}  # id -> [status, remaining times]
        self.down = False
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=5000)
        self.credentials: tuple[str, str] | None = None  # set: Basic auth required, as with ES security on
        self.max_content_length = 100 * 1024 * 1024  # http.max_content_length: larger bodies get a bare 413

    def require_basic_auth(self, user: str, password: str) -> None:
        """Answer 401 ``security_exception`` to requests without these credentials, like ES security."""
        with self.lock:
            self.credentials = (user, password)

    def check_authorization(self, header: str | None) -> None:
        with self.lock:
            credentials = self.credentials
        if credentials is None:
            return
        expected = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
        if header != expected:
            user = "unknown"
            if header and header.startswith("Basic "):
                user = base64.b64decode(header[6:]).decode(errors="replace").partition(":")[0]
            raise EsError(401, "security_exception", f"unable to authenticate user [{user}] for REST request")

    # -- fault switches -------------------------------------------------------------------------------
    def fail_next(self, endpoint: str, count: int = 1, status: int = 500) -> None:
        """Answer the next ``count`` requests to ``endpoint`` (e.g. ``bulk``, ``search``) with ``status``."""
        with self.lock:
            self.failures.setdefault(endpoint, collections.deque()).extend([status] * count)

    def fail_ids(self, ids: dict[str, int], times: int = 1_000_000) -> None:
        """Fail these ``_id``s in ``_bulk`` with the given item status, ``times`` times each."""
        with self.lock:
            for doc_id, status in ids.items():
                self.failing_ids[doc_id] = [status, times]

    def clear_faults(self) -> None:
        with self.lock:
            self.failures.clear()
            self.failing_ids.clear()
            self.down = False

    def reset(self) -> None:
        with self.lock:
            self.clear_faults()
            self.credentials = None
            self.indices.clear()
            self.aliases.clear()
            self.requests.clear()

    def take_failure(self, endpoint: str) -> int | None:
        with self.lock:
            queue = self.failures.get(endpoint)
            return queue.popleft() if queue else None

    # -- names -----------------------------------------------------------------------------------------
    def resolve(self, expression: str, *, allow_missing: bool = False) -> list[str]:
        """Concrete indices behind a comma list of index names, aliases and trailing-``*`` wildcards."""
        found: list[str] = []
        for name in expression.split(","):
            if "*" in name:
                matches = [n for n in self.indices if fnmatch.fnmatchcase(n, name)]
                matches += [i for a, idx in self.aliases.items() if fnmatch.fnmatchcase(a, name) for i in idx]
            elif name in self.indices:
                matches = [name]
            elif name in self.aliases:
                matches = sorted(self.aliases[name])
            elif allow_missing:
                matches = []
            else:
                raise EsError(404, "index_not_found_exception", f"no such index [{name}]", index=name)
            found += [m for m in matches if m not in found]
        return sorted(found)

    def write_index(self, target: str) -> Index:
        if target in self.indices:
            return self.indices[target]
        if target in self.aliases:
            members = self.aliases[target]
            if len(members) != 1:
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    f"no write index is defined for alias [{target}]. The write index may be explicitly "
                    "disabled using is_write_index=false or the alias points to multiple indices without "
                    "one being designated as a write index",
                )
            return self.indices[next(iter(members))]
        raise EsError(404, "index_not_found_exception", f"no such index [{target}]", index=target)

    def aliases_of(self, index: str) -> dict[str, dict]:
        return {alias: {} for alias, members in sorted(self.aliases.items()) if index in members}

    # -- indices ---------------------------------------------------------------------------------------
    def create_index(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            invalid = (
                name != name.lower()
                or name[:1] in {"_", "-", "+"}
                or name in {".", ".."}
                or any(c in _INVALID_NAME_CHARS for c in name)
            )
            if invalid:
                raise EsError(400, "invalid_index_name_exception", f"Invalid index name [{name}]", index=name)
            if name in self.aliases:
                raise EsError(
                    400,
                    "invalid_index_name_exception",
                    f"Invalid index name [{name}], already exists as alias",
                )
            if name in self.indices:
                existing = self.indices[name].uuid  # real ES names the index as [name/uuid]
                raise EsError(
                    400,
                    "resource_already_exists_exception",
                    f"index [{name}/{existing}] already exists",
                    index_uuid=existing,
                    index=name,
                )
            unknown = set(body) - {"settings", "mappings", "aliases"}
            if unknown:
                raise EsError(400, "parse_exception", f"unknown key [{sorted(unknown)[0]}] for create index")
            mappings = copy.deepcopy(body.get("mappings") or {})
            settings = copy.deepcopy(body.get("settings") or {})
            settings = {**settings.pop("index", {}), **settings}
            analyzers = _check_analysis(settings.get("analysis") or {})
            _check_mapping_definition(mappings.get("properties", {}), analyzers)
            validator = compile_mapping(mappings.get("properties", {}), str(mappings.get("dynamic", "true")))
            self.indices[name] = Index(name, settings, mappings, validate=validator)
            for alias in body.get("aliases") or {}:
                self.aliases.setdefault(alias, set()).add(name)
            return {"acknowledged": True, "shards_acknowledged": True, "index": name}

    def delete_index(self, expression: str) -> dict[str, Any]:
        with self.lock:
            names = expression.split(",")
            for name in names:
                if "*" in name or name in {"_all"}:
                    raise EsError(
                        400,
                        "illegal_argument_exception",
                        "Wildcard expressions or all indices are not allowed",
                    )
                if name in self.aliases:
                    raise EsError(
                        400,
                        "illegal_argument_exception",
                        f"The provided expression [{name}] matches an alias, specify the corresponding concrete "
                        "indices instead.",
                    )
                if name not in self.indices:
                    raise EsError(404, "index_not_found_exception", f"no such index [{name}]", index=name)
            for name in names:
                del self.indices[name]
                for alias in list(self.aliases):
                    self.aliases[alias].discard(name)
                    if not self.aliases[alias]:
                        del self.aliases[alias]
            return {"acknowledged": True}

    def settings_of(self, index: Index) -> dict[str, Any]:
        return {
            "index": {
                "number_of_shards": "1",
                "number_of_replicas": "1",
                **copy.deepcopy(index.settings),
                "provided_name": index.name,
                "uuid": index.uuid,
                "version": {"created": self.version},
            }
        }

    def update_aliases(self, actions: list[dict[str, Any]]) -> dict[str, Any]:
        """All actions or none: they are applied to a copy that replaces the state only if every one is valid."""
        with self.lock:
            indices = set(self.indices)
            aliases = {name: set(members) for name, members in self.aliases.items()}
            for action in actions:
                if len(action) != 1:
                    raise EsError(400, "parse_exception", "each alias action must hold exactly one operation")
                op, spec = next(iter(action.items()))
                if op == "remove_index":
                    for name in _names(spec, "index", "indices"):
                        if name not in indices:
                            raise EsError(
                                404, "index_not_found_exception", f"no such index [{name}]", index=name
                            )
                        indices.discard(name)
                        for members in aliases.values():
                            members.discard(name)
                elif op in {"add", "remove"}:
                    targets = [i for expr in _names(spec, "index", "indices") for i in _expand(expr, indices)]
                    for alias in _names(spec, "alias", "aliases"):
                        for index in targets:
                            if op == "add":
                                if alias in indices:
                                    raise EsError(
                                        400,
                                        "invalid_alias_name_exception",
                                        f"Invalid alias name [{alias}]: an index or data stream exists with the "
                                        "same name as the alias",
                                    )
                                aliases.setdefault(alias, set()).add(index)
                            elif index not in aliases.get(alias, set()):
                                raise EsError(
                                    404, "aliases_not_found_exception", f"aliases [{alias}] missing"
                                )
                            else:
                                aliases[alias].discard(index)
                else:
                    raise EsError(400, "parse_exception", f"unsupported alias action [{op}]")
            self.indices = {name: idx for name, idx in self.indices.items() if name in indices}
            self.aliases = {name: members for name, members in aliases.items() if members}
            return {"acknowledged": True, "errors": False}

    # -- documents -------------------------------------------------------------------------------------
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
            return status, {"_index": index.name, "_id": doc_id, "_shards": _SHARDS, **result}

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
                            injected[0], _status_error_type(injected[0]), f"injected failure for [{doc_id}]"
                        )
                    status, result = self._write(index, op, doc_id, source)
                    touched.add(index.name)
                    items.append(
                        {
                            op: {
                                "_index": index_name,
                                "_id": doc_id,
                                **result,
                                "_shards": _SHARDS,
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

    def refresh(self, target: str) -> dict[str, Any]:
        with self.lock:
            names = self.resolve(target)
            for name in names:
                self.indices[name].refresh()
            return {"_shards": {"total": len(names), "successful": len(names), "failed": 0}}

    def count(self, target: str, body: dict[str, Any]) -> dict[str, Any]:
        _match_all_only(body, allowed={"query"})
        with self.lock:
            total = sum(len(self.indices[n].searchable) for n in self.resolve(target))
            return {"count": total, "_shards": {**_SHARDS, "skipped": 0}}

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
            "_shards": {**_SHARDS, "skipped": 0},
            "hits": {"total": {"value": total, "relation": "eq"}, "max_score": None, "hits": results},
        }


def _hit(index: str, doc_id: str, source: bytes, with_source: bool, sort: list | None) -> dict[str, Any]:
    hit: dict[str, Any] = {"_index": index, "_id": doc_id, "_score": None}
    if with_source:
        hit["_source"] = json.loads(source)
    if sort is not None:
        hit["sort"] = sort
    return hit


def _names(spec: dict[str, Any], single: str, plural: str) -> list[str]:
    if single in spec:
        return [spec[single]]
    if plural in spec:
        return list(spec[plural])
    raise EsError(400, "action_request_validation_exception", f"Validation Failed: 1: [{single}] is missing;")


def _expand(expression: str, indices: set[str]) -> list[str]:
    if "*" in expression:
        return sorted(n for n in indices if fnmatch.fnmatchcase(n, expression))
    if expression not in indices:
        raise EsError(404, "index_not_found_exception", f"no such index [{expression}]", index=expression)
    return [expression]


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


def _status_error_type(status: int) -> str:
    return {429: "es_rejected_execution_exception", 400: "document_parsing_exception"}.get(
        status, "internal_server_error" if status >= 500 else "illegal_argument_exception"
    )


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


# ----------------------------------------------------------------------------------------------------------
# HTTP


def _endpoint(method: str, parts: list[str]) -> str:
    """A short name of the route, used by ``fail_next`` and the request log."""
    if not parts:
        return "root"
    if parts[0] == "_aliases":
        return "aliases"
    if parts[0] == "_alias":
        return "alias"
    if parts[0] == "_bulk" or (len(parts) == 2 and parts[1] == "_bulk"):
        return "bulk"
    if len(parts) == 1:
        return {"PUT": "create_index", "DELETE": "delete_index"}.get(method, "index")
    return parts[1].lstrip("_")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cluster: Cluster  # set on the subclass made per server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle + delayed ACK add ~40 ms each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _check_media_types(self) -> None:
        seen = {}
        for header in ("Accept", "Content-Type"):
            value = self.headers.get(header) or ""
            match = _COMPAT_RE.search(value)
            if match:
                seen[header] = int(match.group(1))
        versions = set(seen.values())
        major = self.cluster.major
        if len(versions) > 1 or any(v not in {major - 1, major} for v in versions):
            raise EsError(
                400,
                "media_type_header_exception",
                f"Invalid media-type value on headers {sorted(seen)}: compatible-with={sorted(versions)} "
                f"is not supported by a {major}.x server",
            )

    def _send(self, status: int, body: Any) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _handle(self) -> None:
        if self.cluster.down:
            self.close_connection = True
            return
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.cluster.max_content_length:
            self.rfile.read(length)  # drained, so closing does not reset the connection under the reply
            self.close_connection = True
            self._send(413, None)
            return
        raw = self.rfile.read(length) if length else b""
        endpoint = _endpoint(self.command, parts)
        self.cluster.requests.append(
            {
                "method": self.command,
                "path": url.path,
                "endpoint": endpoint,
                "accept": self.headers.get("Accept"),
                "content_type": self.headers.get("Content-Type"),
                "authorization": self.headers.get("Authorization"),
            }
        )
        try:
            self.cluster.check_authorization(self.headers.get("Authorization"))
            self._check_media_types()
            injected = self.cluster.take_failure(endpoint)
            if injected:
                raise EsError(injected, _status_error_type(injected), f"injected failure on {endpoint}")
            status, body = self._route(parts, query, raw)
        except EsError as exc:
            status, body = exc.status, exc.body()
        self._send(status, body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    def _json(self, raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise EsError(400, "parse_exception", f"request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise EsError(400, "parse_exception", "request body must be a JSON object")
        return body

    def _route(self, parts: list[str], query: dict[str, str], raw: bytes) -> tuple[int, Any]:
        cluster, method = self.cluster, self.command
        refresh = query.get("refresh") in {"", "true", "wait_for"}
        if not parts and method in {"GET", "HEAD"}:
            return 200, {
                "name": "etlkit-es-subset",
                "cluster_name": "etlkit",
                "cluster_uuid": "etlkit-es-subset-cluster",
                "version": {"number": cluster.version, "build_flavor": "default", "lucene_version": "9.11.1"},
                "tagline": "You Know, for Search",
            }
        if parts == ["_aliases"] and method == "POST":
            actions = self._json(raw).get("actions")
            if not isinstance(actions, list):
                raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: no actions;")
            return 200, cluster.update_aliases(actions)
        if len(parts) == 2 and parts[0] == "_alias" and method in {"GET", "HEAD"}:
            with cluster.lock:
                found = {
                    index: {"aliases": {name: {}}}
                    for name in parts[1].split(",")
                    for index in sorted(cluster.aliases.get(name, ()))
                }
            if not found:
                return 404, {"error": f"alias [{parts[1]}] missing", "status": 404}
            return 200, found
        if parts == ["_bulk"] and method in {"POST", "PUT"}:
            return 200, cluster.bulk(None, raw, refresh)
        if len(parts) == 1 and method == "PUT":
            return 200, cluster.create_index(parts[0], self._json(raw))
        if not parts or parts[0].startswith("_"):
            raise EsError(400, "illegal_argument_exception", f"unsupported route [{method} {self.path}]")
        target = parts[0]
        if len(parts) == 1:
            return self._index_route(method, target, raw)
        action = parts[1]
        if action == "_bulk" and len(parts) == 2 and method in {"POST", "PUT"}:
            return 200, cluster.bulk(target, raw, refresh)
        if action == "_refresh" and len(parts) == 2 and method in {"POST", "GET"}:
            return 200, cluster.refresh(target)
        if action == "_count" and len(parts) == 2 and method in {"POST", "GET"}:
            return 200, cluster.count(target, self._json(raw))
        if action == "_search" and len(parts) == 2 and method in {"POST", "GET"}:
            body = self._json(raw)
            if "size" in query:
                body["size"] = int(query["size"])
            return 200, cluster.search(target, body)
        if action == "_mget" and len(parts) == 2 and method in {"POST", "GET"}:
            return 200, cluster.mget(target, self._json(raw))
        if action == "_doc" and len(parts) == 3:
            if method in {"GET", "HEAD"}:
                return cluster.get_document(target, parts[2])
            if method in {"PUT", "POST"}:
                return cluster.index_document(target, parts[2], raw, refresh)
        if action in {"_mapping", "_settings", "_alias"} and len(parts) == 2 and method == "GET":
            with cluster.lock:
                names = cluster.resolve(target)
                if action == "_mapping":
                    return 200, {n: {"mappings": copy.deepcopy(cluster.indices[n].mappings)} for n in names}
                if action == "_settings":
                    return 200, {n: {"settings": cluster.settings_of(cluster.indices[n])} for n in names}
                return 200, {n: {"aliases": cluster.aliases_of(n)} for n in names}
        raise EsError(400, "illegal_argument_exception", f"unsupported route [{method} {self.path}]")

    def _index_route(self, method: str, target: str, raw: bytes) -> tuple[int, Any]:
        cluster = self.cluster
        if method == "PUT":
            return 200, cluster.create_index(target, self._json(raw))
        if method == "DELETE":
            return 200, cluster.delete_index(target)
        with cluster.lock:
            names = cluster.resolve(target, allow_missing=method == "HEAD")
            if method == "HEAD":
                return (200 if names else 404), None
            return 200, {
                n: {
                    "aliases": cluster.aliases_of(n),
                    "mappings": copy.deepcopy(cluster.indices[n].mappings),
                    "settings": cluster.settings_of(cluster.indices[n]),
                }
                for n in names
            }


class EsSubsetServer:
    """The server on 127.0.0.1: ``start()``, ``go_down()`` / ``come_up()`` (refused connections), ``stop()``."""

    def __init__(self, major: int = 8, port: int = 0, host: str = "127.0.0.1"):
        self.cluster = Cluster(major)
        self.host = host
        self.port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> EsSubsetServer:
        handler = type("BoundHandler", (Handler,), {"cluster": self.cluster})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="es-subset", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def go_down(self) -> None:
        """Refuse new connections and drop requests on kept-alive ones, until ``come_up``."""
        self.cluster.down = True
        self.stop()

    def come_up(self) -> None:
        self.cluster.down = False
        self.start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--major", type=int, default=8, choices=[8, 9])
    args = parser.parse_args()
    server = EsSubsetServer(args.major, args.port, args.host).start()
    print(f"ES-subset server (emulating {server.cluster.version}) on {server.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
