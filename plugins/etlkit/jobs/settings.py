"""The deployment settings of declarative jobs: the ``declarative_jobs`` Variable, one model.

Resolved by ``JobsSettings.resolve`` (etlkit.common.settings): the defaults below, the DAG file's
``settings_defaults``, env ``ETLKIT_JOBS_<NAME>`` (JSON for ``staging`` and ``environments``), then
the Variable. A source replaces a whole top-level key (``staging`` from the Variable replaces
``staging`` from env). Unknown keys are an error at every level, named in the message.

The job file's ``conn`` fields are logical names; ``environments`` maps them to connection ids per
environment (docs/jobs.md, Connections). Without environments, logical names are the ids.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from etlkit.common.settings import Number, PipelineSettings

__all__ = ["EnvironmentSettings", "JobsSettings", "StagingSettings", "default_root"]


def default_root(kind: str) -> Path:
    """Single-environment defaults under AIRFLOW_HOME: ``declarative/data`` and ``declarative/staging``."""
    home = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
    return home / "declarative" / kind


def _known_keys(value: Any, model: type[BaseModel], where: str = "") -> Any:
    """Names the unknown keys (pydantic's own message would name only the top-level field)."""
    if value is None:
        return {}
    if isinstance(value, model):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"{where}expected an object, got {type(value).__name__}")
    if unknown := sorted(set(value) - set(model.model_fields)):
        raise ValueError(f"{where}unknown keys {unknown}; known: {sorted(model.model_fields)}")
    return value


class StagingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    root: str | None = Field(
        None,
        description="where runs stage component outputs: a path every worker shares, file://… or "
        "s3://bucket/prefix (default $AIRFLOW_HOME/declarative/staging, one machine only)",
    )
    conn_id: str | None = Field(None, description="the connection of an object storage root (s3://)")
    retention_days: Number = Field(
        7, ge=0, description="housekeeping removes staged runs older than this many days"
    )

    @model_validator(mode="after")
    def _conn_id_needs_a_uri_root(self):
        if self.conn_id and "://" not in (self.root or ""):
            raise ValueError(
                f"conn_id {self.conn_id!r} needs an object storage root such as "
                "'s3://bucket/prefix' in staging.root"
            )
        return self

    def root_or_default(self) -> str:
        return self.root or str(default_root("staging"))


class EnvironmentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_root: str | None = Field(
        None, description="root of relative file paths (default $AIRFLOW_HOME/declarative/data)"
    )
    connections: dict[str, str] | None = Field(
        None, description="logical connection name -> Airflow connection id (null: names are the ids)"
    )


class JobsSettings(PipelineSettings):
    VARIABLE = "declarative_jobs"
    ENV_PREFIX = "ETLKIT_JOBS_"
    RUN_PARAMS = ()  # a run picks its environment with the job DAG's own `environment` Param

    default_environment: str | None = Field(
        None, description="the environment of a run whose conf names none"
    )
    metrics_conn_id: str = Field(
        "etl_metrics_pg", description="PostgreSQL connection of the job and component metrics tables"
    )
    staging: StagingSettings = Field(default_factory=StagingSettings, description="run staging")
    environments: dict[str, EnvironmentSettings] = Field(
        default_factory=dict,
        description="environment name -> its data_root and connection mapping (empty: one environment)",
    )

    @field_validator("staging", mode="before")
    @classmethod
    def _staging_keys(cls, value: Any) -> Any:
        return _known_keys(value, StagingSettings)

    @field_validator("environments", mode="before")
    @classmethod
    def _environment_keys(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict):
            for name, environment in value.items():
                _known_keys(environment, EnvironmentSettings, f"environment {name!r}: ")
        return value
