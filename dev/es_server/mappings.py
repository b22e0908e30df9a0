"""Index mappings and analysis settings: what ``PUT /<index>`` accepts, and the per-index document validator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dev.es_server.errors import EsError

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


def check_analysis(analysis: dict[str, Any]) -> set[str]:
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


def check_mapping_definition(properties: dict[str, Any], analyzers: set[str], path: str = "") -> None:
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
            check_mapping_definition(spec.get("properties", {}), analyzers, f"{field_path}.")
        check_mapping_definition(spec.get("fields", {}), analyzers, f"{field_path}.")


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
