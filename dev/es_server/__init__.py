"""A local HTTP server speaking the subset of the Elasticsearch REST API the movies DAG uses.

Standard library only, in-memory state, faithful enough for the official Python client to work against it
unchanged (product header, ES-shaped errors, compatibility-header checks of an emulated major version).
Strict mappings and field types are enforced like Elasticsearch does; anything outside the subset answers
400 so a gap shows up as a failure, never as silent acceptance. Failure switches (``fail_next``,
``fail_ids``, ``go_down``/``come_up``) let tests inject the faults the pipeline must survive.

Run standalone for the demo or the benchmark: ``python -m dev.es_server --port 9200 --major 8``.

One module per API area: ``mappings`` (mapping and analysis checks, the document validator),
``indices`` (indices, aliases, refresh), ``documents`` (documents, ``_mget``, ``_bulk``), ``search``
(``_count``, ``_search``); ``state`` holds what they share, ``cluster`` joins them, ``server`` is the HTTP
plumbing. The names below are this package's public API, as they were when it was one module.
"""

from dev.es_server.cluster import Cluster
from dev.es_server.errors import EsError
from dev.es_server.mappings import (
    BUILTIN_ANALYZERS,
    BUILTIN_FILTERS,
    BUILTIN_TOKENIZERS,
    FILTER_TYPES,
    MAPPING_PARAMS,
    STEMMER_LANGUAGES,
    STOPWORD_LISTS,
    SUPPORTED_TYPES,
    Validator,
    compile_mapping,
)
from dev.es_server.search import MAX_RESULT_WINDOW
from dev.es_server.server import EsSubsetServer, Handler, main
from dev.es_server.state import Index

__all__ = [
    "BUILTIN_ANALYZERS",
    "BUILTIN_FILTERS",
    "BUILTIN_TOKENIZERS",
    "FILTER_TYPES",
    "MAPPING_PARAMS",
    "MAX_RESULT_WINDOW",
    "STEMMER_LANGUAGES",
    "STOPWORD_LISTS",
    "SUPPORTED_TYPES",
    "Cluster",
    "EsError",
    "EsSubsetServer",
    "Handler",
    "Index",
    "Validator",
    "compile_mapping",
    "main",
]
