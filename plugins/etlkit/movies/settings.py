"""Pipeline settings: DAG Param defaults (overridable by ``MOVIES_ETL_<NAME>`` env vars) and validation."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from etlkit.common.errors import ConfigurationError


@dataclass(frozen=True)
class MoviesSettings:
    full_refresh: bool = False
    reconcile: bool = False
    pg_conn_id: str = "movies_postgres"
    es_conn_id: str = "movies_elasticsearch"
    pg_schema: str = "content"
    modified_column: str = "modified"
    created_column: str = "created"
    index_alias: str = "movies"
    batch_size: int = 1000
    bulk_chunk_docs: int = 500
    bulk_chunk_bytes: int = 10 * 1024 * 1024
    overlap_seconds: int = 60
    max_reported_errors: int = 10
    reconcile_interval_minutes: int = 60
    full_refresh_interval_hours: int = 24
    keep_previous_index: bool = True

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> MoviesSettings:
        values = {}
        for f in fields(cls):
            if f.name in params:
                values[f.name] = _coerce(f.name, params[f.name], type(getattr(cls(), f.name)))
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        positive = ("batch_size", "bulk_chunk_docs", "bulk_chunk_bytes", "max_reported_errors")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigurationError(f"param {name} must be >= 1, got {getattr(self, name)}")
        for name in ("overlap_seconds", "reconcile_interval_minutes", "full_refresh_interval_hours"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"param {name} must be >= 0, got {getattr(self, name)}")
        for name in (
            "pg_schema",
            "modified_column",
            "created_column",
            "index_alias",
            "pg_conn_id",
            "es_conn_id",
        ):
            if not getattr(self, name):
                raise ConfigurationError(f"param {name} must not be empty")
        alias = self.index_alias
        if alias != alias.lower() or alias[0] in "_-+" or any(c in alias for c in ' ,"*\\/<>|?#:'):
            raise ConfigurationError(f"param index_alias {alias!r} is not a valid Elasticsearch index name")


def _coerce(name: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).strip().lower() in {"true", "1", "yes"}:
            return True
        if str(value).strip().lower() in {"false", "0", "no"}:
            return False
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif isinstance(value, str):
        return value
    raise ConfigurationError(f"param {name}: {value!r} is not a valid {kind.__name__}")


def default_settings(environ: Mapping[str, str] | None = None) -> MoviesSettings:
    """Code defaults overridden by ``MOVIES_ETL_<NAME>`` environment variables (read at DAG parse time)."""
    environ = os.environ if environ is None else environ
    overrides = {
        f.name: environ[f"MOVIES_ETL_{f.name.upper()}"]
        for f in fields(MoviesSettings)
        if f"MOVIES_ETL_{f.name.upper()}" in environ
    }
    return MoviesSettings.from_params(overrides)
