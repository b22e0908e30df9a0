"""The emulated cluster: one object serving every API area over one state and one lock."""

from __future__ import annotations

from dev.es_server.documents import DocumentsApi
from dev.es_server.indices import IndicesApi
from dev.es_server.search import SearchApi


class Cluster(IndicesApi, DocumentsApi, SearchApi):
    """In-memory indices and aliases; every public method holds the lock, so requests are atomic."""
