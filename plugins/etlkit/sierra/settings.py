"""The ``sierra_sync_settings`` Variable: defaults, validation, unknown keys."""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from typing import Any

from etlkit.common.errors import ConfigurationError

log = logging.getLogger(__name__)

SETTINGS_VARIABLE = "sierra_sync_settings"
CLAMP_POLICIES = ("warn", "fail")
MAX_EXTRACT_PARALLELISM = 4


@dataclass(frozen=True)
class SyncSettings:
    sierra_conn_id: str = "sierra_dna"
    backend_conn_id: str = "signum_backend"
    max_sync_delta_minutes: float = 60
    clamp_policy: str = "warn"
    changes_overlap_seconds: float = 60
    max_batches_per_run: int = 10
    # Accepted for compatibility with the spec's table; COPY streams in server-sized chunks.
    fetch_size: int = 5000
    statement_timeout_seconds: float = 900
    # Sierra is the library's production database: one connection unless configured. A batch of at
    # least 2 x extract_min_items_per_part items is then copied over up to this many connections
    # sharing one snapshot.
    extract_parallelism: int = 1
    extract_min_items_per_part: int = 20000
    get_timeout_seconds: float = 10
    post_timeout_seconds: float = 300
    retry_attempts: int = 5
    retry_base_seconds: float = 2
    retry_max_seconds: float = 60
    itype_null_fallback: int | None = None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _problem(name: str, value: Any) -> str | None:
    """Why ``value`` is invalid for setting ``name``, or None when it is fine."""
    if name in ("sierra_conn_id", "backend_conn_id"):
        return None if isinstance(value, str) and value else "must be a non-empty string"
    if name == "clamp_policy":
        return None if value in CLAMP_POLICIES else f"must be one of {CLAMP_POLICIES}"
    if name == "itype_null_fallback":
        return None if value is None or (_is_int(value) and 0 <= value <= 255) else "must be null or 0-255"
    if name == "extract_parallelism":
        return (
            None
            if _is_int(value) and 1 <= value <= MAX_EXTRACT_PARALLELISM
            else f"must be an integer 1-{MAX_EXTRACT_PARALLELISM} (connections to the production Sierra DB)"
        )
    if name in (
        "max_batches_per_run",
        "fetch_size",
        "retry_attempts",
        "extract_min_items_per_part",
    ):
        return None if _is_int(value) and value >= 1 else "must be an integer >= 1"
    if name == "changes_overlap_seconds":
        return None if _is_number(value) and value >= 0 else "must be a number >= 0"
    return None if _is_number(value) and value > 0 else "must be a number > 0"


def parse_settings(raw: dict[str, Any] | None) -> SyncSettings:
    """Defaults for missing keys, a warning for unknown keys, ConfigurationError for invalid values."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{SETTINGS_VARIABLE} must be a JSON object, got {type(raw).__name__}")
    known = {f.name for f in fields(SyncSettings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        log.warning("%s: ignoring unknown keys %s", SETTINGS_VARIABLE, unknown)
    values = {k: v for k, v in raw.items() if k in known}
    problems = [f"{k}={v!r} {p}" for k, v in values.items() if (p := _problem(k, v))]
    if problems:
        raise ConfigurationError(f"{SETTINGS_VARIABLE} is invalid: " + "; ".join(problems))
    settings = replace(SyncSettings(), **values)
    if settings.retry_base_seconds > settings.retry_max_seconds:
        raise ConfigurationError(f"{SETTINGS_VARIABLE}: retry_base_seconds exceeds retry_max_seconds")
    return settings
