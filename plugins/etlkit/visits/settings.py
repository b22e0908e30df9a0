"""The settings of the visits pipeline (docs/visits.md, Connections and configuration).

``VisitsSettings`` is what a run works with, resolved per run by ``VisitsSettings.resolve``
(etlkit.common.settings): the defaults below, the DAG file's ``settings_defaults``, env
``SFTP_VISITS_<NAME>``, the Variable ``sftp_visits_config`` (a JSON object), then the run's Params
``reference_date`` and ``dry_run`` (null keeps the configured value).

``VisitsSchedule`` is when the DAG runs: the cron and the timezone, read from env where the DAG file
is parsed (the scheduler needs them before any run, so no Variable). The runs use the same timezone
for R, the archive names and the monthly view. Connection ids are operator arguments.
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import date
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from etlkit.common.settings import Integer, PipelineSettings

IDENTIFIER = r"^[a-z_][a-z0-9_]{0,62}$"
ENV_PREFIX = "SFTP_VISITS_"


def _identifier(default: str, what: str) -> str:
    return Field(default, pattern=IDENTIFIER, description=f"{what} (a lower-case SQL identifier)")


class VisitsSettings(PipelineSettings):
    VARIABLE = "sftp_visits_config"
    ENV_PREFIX = ENV_PREFIX
    RUN_PARAMS = ("reference_date", "dry_run")
    MOVED_KEYS = dict.fromkeys(
        ("sftp_conn_id", "postgres_conn_id"),
        "connection ids are operator arguments set in the DAG file; remove the key (docs/visits.md, Migrating)",
    )

    remote_dir: str = Field("/home/vinkOS/archivosVisitas", min_length=1, description="SFTP directory read")
    file_pattern: str = Field(
        r"^report_\d+\.txt$", description="regex of the report file names (and of give_up_files names)"
    )
    backup_dir: str = Field("/home/etl/visitas/bckp", min_length=1, description="zip archive of loaded files")
    quarantine_dir: str = Field(
        "/home/etl/visitas/quarantine", min_length=1, description="copies of rejected and given-up files"
    )
    staging_dir: str = Field(
        os.path.join(tempfile.gettempdir(), "sftp_visits_staging"),
        min_length=1,
        description="local download directory (per worker)",
    )
    min_file_age_s: Integer = Field(
        60, ge=0, description="younger files wait for the next run (still uploading)"
    )
    batch_rows: Integer = Field(10_000, ge=1, description="rows per COPY batch")
    max_line_chars: Integer = Field(65_536, ge=1, description="longer lines are rejected rows")
    db_schema: str = _identifier("public", "schema of the tables")
    table_visitor: str = _identifier("visitor", "visitor metrics table")
    table_statistics: str = _identifier("statistics", "valid rows table")
    table_errors: str = _identifier("errors", "invalid rows table")
    table_load_log: str = _identifier("load_log", "load-control table")
    view_visitor_report: str = _identifier("visitor_report", "visitor report view")
    view_monthly: str = _identifier("load_log_monthly", "monthly report view")
    reference_date: date | None = Field(
        None, description="R for the visit counters (YYYY-MM-DD); empty: the trigger date in SFTP_VISITS_TZ"
    )
    dry_run: bool = Field(False, description="Parse and validate, commit nothing, touch nothing")

    @field_validator("file_pattern")
    @classmethod
    def _a_regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regex: {exc}") from None
        return value


class VisitsSchedule(PipelineSettings):
    """Env ``SFTP_VISITS_SCHEDULE`` and ``SFTP_VISITS_TZ``, read when the DAG file is parsed."""

    ENV_PREFIX = ENV_PREFIX

    schedule: str = Field("2 0 * * *", min_length=1, description="cron of the daily run")
    tz: str = Field("UTC", description="timezone of the cron, of R, of archive names and of the monthly view")

    @field_validator("tz")
    @classmethod
    def _a_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA timezone name (e.g. UTC, America/Mexico_City)") from None
        return value
