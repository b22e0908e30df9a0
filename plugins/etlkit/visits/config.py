"""The ``sftp_visits_config`` Variable: defaults, unknown-key check, identifier check."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from etlkit.common.errors import ConfigurationError

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
CONFIG_VARIABLE = "sftp_visits_config"
DEFAULT_SCHEDULE = "2 0 * * *"
DEFAULT_TIMEZONE = "UTC"


def schedule_from_env() -> str:
    return os.environ.get("SFTP_VISITS_SCHEDULE", DEFAULT_SCHEDULE)


def timezone_from_env() -> str:
    return os.environ.get("SFTP_VISITS_TZ", DEFAULT_TIMEZONE)


@dataclass(frozen=True)
class VisitsConfig:
    sftp_conn_id: str = "sftp_visits"
    postgres_conn_id: str = "postgres_visits"
    remote_dir: str = "/home/vinkOS/archivosVisitas"
    file_pattern: str = r"^report_\d+\.txt$"
    backup_dir: str = "/home/etl/visitas/bckp"
    quarantine_dir: str = "/home/etl/visitas/quarantine"
    staging_dir: str = os.path.join(tempfile.gettempdir(), "sftp_visits_staging")
    min_file_age_s: int = 60
    batch_rows: int = 10_000
    max_line_chars: int = 65_536
    db_schema: str = "public"
    table_visitor: str = "visitor"
    table_statistics: str = "statistics"
    table_errors: str = "errors"
    table_load_log: str = "load_log"
    view_visitor_report: str = "visitor_report"
    view_monthly: str = "load_log_monthly"
    timezone: str = DEFAULT_TIMEZONE

    @classmethod
    def from_mapping(cls, values: dict[str, Any] | None, **overrides: Any) -> VisitsConfig:
        values = dict(values or {})
        known = {f.name for f in fields(cls)} - {"timezone"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigurationError(f"{CONFIG_VARIABLE}: unknown keys {unknown}")
        config = replace(cls(), **values, **{k: v for k, v in overrides.items() if v is not None})
        config.validate()
        return config

    def validate(self) -> None:
        for name in self.identifier_fields():
            value = getattr(self, name)
            if not isinstance(value, str) or not IDENTIFIER.match(value):
                raise ConfigurationError(f"{CONFIG_VARIABLE}: {name}={value!r} is not a valid identifier")
        try:
            re.compile(self.file_pattern)
        except re.error as exc:
            raise ConfigurationError(f"{CONFIG_VARIABLE}: file_pattern is not a regex: {exc}") from exc
        for name in ("min_file_age_s", "batch_rows", "max_line_chars"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ConfigurationError(f"{CONFIG_VARIABLE}: {name} must be a non-negative integer")
        if self.batch_rows == 0 or self.max_line_chars == 0:
            raise ConfigurationError(f"{CONFIG_VARIABLE}: batch_rows and max_line_chars must be > 0")

    @staticmethod
    def identifier_fields() -> tuple[str, ...]:
        return (
            "db_schema",
            "table_visitor",
            "table_statistics",
            "table_errors",
            "table_load_log",
            "view_visitor_report",
            "view_monthly",
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
