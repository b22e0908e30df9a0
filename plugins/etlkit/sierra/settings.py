"""The sync's settings: one pydantic model, resolved per run by ``etlkit.common.settings``.

Sources, each overriding the ones before it: the defaults below, the DAG file's
``settings_defaults``, environment variables ``SIERRA_SYNC_<FIELD>``, the Variable
``sierra_sync_settings`` (a JSON object) and, for ``max_batches_per_run`` and ``dry_run_dir``, the
run's Params ``max_batches`` and ``dry_run_dir``. Unknown keys are an error in every source.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator

from etlkit.common.settings import Integer, Number, PipelineSettings

MAX_EXTRACT_PARALLELISM = 4
MOVED_TO_THE_DAG_FILE = (
    "connection ids are the operator's sierra_conn_id / backend_conn_id, set in the DAG file; remove the "
    "key (docs/sierra.md, Migrating)"
)


class SierraSettings(PipelineSettings):
    VARIABLE = "sierra_sync_settings"
    ENV_PREFIX = "SIERRA_SYNC_"
    RUN_PARAMS = ("max_batches_per_run", "dry_run_dir")
    # Trigger-form names that differ from their field: users' trigger configs say max_batches.
    PARAM_NAMES: ClassVar[Mapping[str, str]] = {"max_batches_per_run": "max_batches"}
    MOVED_KEYS: ClassVar[Mapping[str, str]] = dict.fromkeys(
        ("sierra_conn_id", "backend_conn_id"), MOVED_TO_THE_DAG_FILE
    )

    max_sync_delta_minutes: Number = Field(
        60, gt=0, description="A changes window starts no earlier than the DB's now() minus this"
    )
    clamp_policy: Literal["warn", "fail"] = Field(
        "warn", description="A clamped changes window: warn and post from the floor, or fail the run"
    )
    changes_overlap_seconds: Number = Field(
        60, ge=0, description="A changes window starts this long before the backend's timestamp"
    )
    max_batches_per_run: Integer = Field(
        10, ge=1, description="Full-sync batches one run posts at most; the next run resumes"
    )
    fetch_size: Integer = Field(
        5000,
        ge=1,
        description="Accepted for the spec's table; no effect (COPY streams in server-sized chunks)",
    )
    statement_timeout_seconds: Number = Field(
        900, gt=0, description="Shared by one extraction attempt's statements (each gets what is left)"
    )
    # Sierra is the library's production database: one connection unless configured.
    extract_parallelism: Integer = Field(
        1,
        ge=1,
        le=MAX_EXTRACT_PARALLELISM,
        description="Connections (one snapshot) a large batch is copied over; each costs the production DB",
    )
    extract_min_items_per_part: Integer = Field(
        20000, ge=1, description="Items each part of a batch copied in parts holds at least"
    )
    get_timeout_seconds: Number = Field(10, gt=0, description="Timeout of one GET /sync")
    post_timeout_seconds: Number = Field(300, gt=0, description="Timeout of one POST /sync")
    retry_attempts: Integer = Field(5, ge=1, description="Attempts of each operation (GET, POST, extraction)")
    retry_base_seconds: Number = Field(2, gt=0, description="First retry wait; doubles, +-20 % jitter")
    retry_max_seconds: Number = Field(
        60, gt=0, description="Longest retry wait (also caps a 429's Retry-After)"
    )
    itype_null_fallback: Integer | None = Field(
        None,
        ge=0,
        le=255,
        description="Written for a NULL itype (null: an empty field, which the backend refuses)",
    )
    dry_run_dir: str | None = Field(
        None, description="Extract the requested batch into this directory and post nothing"
    )

    @field_validator("dry_run_dir")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _base_within_max(self) -> Self:
        if self.retry_base_seconds > self.retry_max_seconds:
            raise ValueError("retry_base_seconds exceeds retry_max_seconds")
        return self
