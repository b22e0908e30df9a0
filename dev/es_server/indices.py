"""Index and alias APIs: create/delete an index, its settings, ``_aliases`` actions, ``_refresh``."""

from __future__ import annotations

import copy
import fnmatch
from typing import Any

from dev.es_server.errors import EsError
from dev.es_server.mappings import check_analysis, check_mapping_definition, compile_mapping
from dev.es_server.state import ClusterState, Index

_INVALID_NAME_CHARS = set(' "*\\<|,>/?#:')


class IndicesApi(ClusterState):
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
            analyzers = check_analysis(settings.get("analysis") or {})
            check_mapping_definition(mappings.get("properties", {}), analyzers)
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

    def refresh(self, target: str) -> dict[str, Any]:
        with self.lock:
            names = self.resolve(target)
            for name in names:
                self.indices[name].refresh()
            return {"_shards": {"total": len(names), "successful": len(names), "failed": 0}}


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
