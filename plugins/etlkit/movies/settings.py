"""The movies pipeline's settings: one model, resolved per run from the DAG file's defaults, env
``MOVIES_ETL_<NAME>`` and the run's Params (see ``etlkit.common.settings`` for the order).

Connection ids are not settings: they are the operators' ``pg_conn_id`` / ``es_conn_id`` arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from etlkit.common.errors import ConfigurationError
from etlkit.common.settings import Integer, PipelineSettings

# Former Params, now the operators' arguments.
MOVED_TO_DAG_FILE = ("pg_conn_id", "es_conn_id")
# Characters Elasticsearch refuses in an index or alias name.
_INVALID_INDEX_CHARS = ' ,"*\\/<>|?#:'


class MoviesSettings(PipelineSettings):
    ENV_PREFIX = "MOVIES_ETL_"
    RUN_PARAMS = (
        "full_refresh",
        "reconcile",
        "pg_schema",
        "modified_column",
        "created_column",
        "index_alias",
        "batch_size",
        "bulk_chunk_docs",
        "bulk_chunk_bytes",
        "overlap_seconds",
        "max_reported_errors",
        "reconcile_interval_minutes",
        "full_refresh_interval_hours",
        "keep_previous_index",
    )

    full_refresh: bool = Field(False, description="Rebuild into a new index and swap the alias")
    reconcile: bool = Field(False, description="Reconcile deletions and missing documents this run")
    pg_schema: str = Field("content", min_length=1, description="Source schema")
    modified_column: str = Field(
        "modified", min_length=1, description="Change column (modified / updated_at)"
    )
    created_column: str = Field(
        "created", min_length=1, description="Link-table fallback (created / created_at)"
    )
    index_alias: str = Field(
        "movies", min_length=1, description="Alias clients query; physical indices are <alias>_<ts>"
    )
    batch_size: Integer = Field(1000, ge=1, description="Cursor fetch size and _search page size")
    bulk_chunk_docs: Integer = Field(500, ge=1, description="Max actions per _bulk request")
    bulk_chunk_bytes: Integer = Field(10 * 1024 * 1024, ge=1, description="Max bytes per _bulk request")
    overlap_seconds: Integer = Field(60, ge=0, description="Re-read window below the HWM")
    max_reported_errors: Integer = Field(10, ge=1, description="Failed items shown")
    reconcile_interval_minutes: Integer = Field(
        60, ge=0, description="Reconcile every N minutes (0 = on demand)"
    )
    full_refresh_interval_hours: Integer = Field(24, ge=0, description="Full rebuild every N hours (0 = off)")
    keep_previous_index: bool = Field(True, description="Keep the previous index for rollback")

    @field_validator("index_alias")
    @classmethod
    def _valid_index_name(cls, alias: str) -> str:
        if alias != alias.lower() or alias[0] in "_-+" or any(c in alias for c in _INVALID_INDEX_CHARS):
            raise ValueError(
                "not a valid Elasticsearch index name (lowercase, no leading _ - +, none of "
                f"{_INVALID_INDEX_CHARS!r})"
            )
        return alias


def check_run_params(params: Mapping[str, Any]) -> None:
    """Refuse a run conf key that is no setting, which would otherwise be ignored (a typo, or a
    connection id, a Param before issue 17, which would run against other connections than asked)."""
    moved = [name for name in MOVED_TO_DAG_FILE if params.get(name) is not None]
    if moved:
        raise ConfigurationError(
            f"{', '.join(moved)} are no longer run Params: the connections are set in the DAG file "
            "(docs/movies.md, Migrating); trigger without them"
        )
    unknown = sorted(set(params) - {*MoviesSettings.RUN_PARAMS, *MOVED_TO_DAG_FILE})
    if unknown:
        raise ConfigurationError(
            f"the run's params: unknown keys {unknown} (known: {sorted(MoviesSettings.RUN_PARAMS)})"
        )
