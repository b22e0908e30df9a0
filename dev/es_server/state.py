"""The cluster's in-memory state: indices, aliases, credentials, fault switches and name resolution."""

from __future__ import annotations

import base64
import collections
import fnmatch
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from dev.es_server.errors import EsError
from dev.es_server.mappings import Validator


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


class ClusterState:
    """Indices and aliases, auth and fault switches; the API areas (indices, documents, search) build on it.

    Every public method holds the lock, so requests are atomic."""

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
