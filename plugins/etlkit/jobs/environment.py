"""Per-run resolution of logical connection names and roots (the ``declarative_jobs`` Variable).

Resolved once by ``_prepare`` and handed to every component task as XCom, so editing the
Variable mid-run does not affect a run. The result holds conn ids and paths, never secrets.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from etlkit.common.errors import ConfigurationError
from etlkit.jobs.validation import SOURCE_TYPES, WRITER_TYPES, ValidatedJob

VARIABLE_KEY = "declarative_jobs"
DEFAULT_METRICS_CONN_ID = "etl_metrics_pg"
SQL_CONN_TYPES = ("postgres",)
FILE_CONN_TYPES = ("fs",)


def default_root(kind: str) -> Path:
    """Single-environment defaults under AIRFLOW_HOME: ``declarative/data`` and ``declarative/staging``."""
    home = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
    return home / "declarative" / kind


def logical_connections(validated: ValidatedJob) -> dict[str, str]:
    """Logical name -> kind ('sql' or 'file') of every ``conn`` in the job."""
    names: dict[str, str] = {}
    for component in validated.job.components:
        conn = getattr(component.config, "conn", None)
        if conn is None or component.type not in SOURCE_TYPES | WRITER_TYPES:
            continue
        kind = "sql" if component.type in ("read_sql", "write_sql") else "file"
        if names.get(conn, kind) != kind:
            raise ConfigurationError(f"logical connection {conn!r} is used both for SQL and for files")
        names[conn] = kind
    return names


SETTINGS_KEYS = frozenset({"default_environment", "metrics_conn_id", "staging", "environments"})
STAGING_KEYS = frozenset({"root", "conn_id", "retention_days"})
ENVIRONMENT_KEYS = frozenset({"data_root", "connections"})


def check_settings(settings: dict[str, Any] | None) -> dict[str, Any]:
    """The Variable's settings (``{}`` when unset); a misplaced or misspelt key is a ConfigurationError.

    Without this an environment put at the top level, say, would silently fall back to the defaults.
    """
    settings = settings or {}
    _reject_unknown_keys(settings, SETTINGS_KEYS, f"Variable {VARIABLE_KEY!r}")
    staging = settings.get("staging") or {}
    _reject_unknown_keys(staging, STAGING_KEYS, f"Variable {VARIABLE_KEY!r} staging")
    if staging.get("conn_id") and "://" not in str(staging.get("root") or ""):
        raise ConfigurationError(
            f"Variable {VARIABLE_KEY!r} staging: conn_id {staging['conn_id']!r} needs an object storage "
            "root such as 's3://bucket/prefix' in staging.root"
        )
    for name, env in (settings.get("environments") or {}).items():
        _reject_unknown_keys(env, ENVIRONMENT_KEYS, f"Variable {VARIABLE_KEY!r} environment {name!r}")
    return settings


def _reject_unknown_keys(mapping: dict[str, Any], known: frozenset[str], where: str) -> None:
    if not isinstance(mapping, dict):
        raise ConfigurationError(f"{where}: expected an object, got {type(mapping).__name__}")
    if unknown := sorted(set(mapping) - known):
        raise ConfigurationError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")


def resolve_run_context(
    validated: ValidatedJob,
    settings: dict[str, Any] | None,
    requested_environment: str | None,
    conn_type_of: Callable[[str], str | None],
    file_root_of: Callable[[str], str | None],
) -> dict[str, Any]:
    """The run context; raises ConfigurationError naming the environment and the logical name.

    ``conn_type_of(conn_id)`` gives the connection's type or None when it does not exist;
    ``file_root_of(conn_id)`` gives an fs connection's root path.
    """
    settings = check_settings(settings)
    environments = settings.get("environments") or {}
    environment = requested_environment or settings.get("default_environment")
    if environments:
        if environment not in environments:
            raise ConfigurationError(
                f"environment {environment!r} is not configured in Variable {VARIABLE_KEY!r}; "
                f"configured: {', '.join(sorted(environments))}"
            )
        env_settings = environments[environment]
    elif requested_environment:
        raise ConfigurationError(
            f"environment {requested_environment!r} requested but Variable {VARIABLE_KEY!r} defines no environments"
        )
    else:
        env_settings = {}
    mapping = env_settings.get("connections")
    connections: dict[str, str] = {}
    file_roots: dict[str, str] = {}
    for logical, kind in logical_connections(validated).items():
        if mapping is not None and logical not in mapping:
            raise ConfigurationError(
                f"environment {environment!r}: logical connection name {logical!r} is not mapped in Variable "
                f"{VARIABLE_KEY!r}"
            )
        conn_id = mapping[logical] if mapping is not None else logical
        conn_type = conn_type_of(conn_id)
        if conn_type is None:
            raise ConfigurationError(
                f"environment {environment!r}: connection {conn_id!r} for logical name {logical!r} does not exist"
            )
        allowed = SQL_CONN_TYPES if kind == "sql" else FILE_CONN_TYPES
        if conn_type not in allowed:
            raise ConfigurationError(
                f"environment {environment!r}: connection {conn_id!r} for logical name {logical!r} has type "
                f"{conn_type!r}, expected {' or '.join(allowed)}"
            )
        connections[logical] = conn_id
        if kind == "file":
            root = file_root_of(conn_id)
            if not root:
                raise ConfigurationError(f"fs connection {conn_id!r} has no 'path' in its extra")
            file_roots[logical] = root
    staging = settings.get("staging") or {}
    staging_conn_id = staging.get("conn_id")
    if staging_conn_id and conn_type_of(staging_conn_id) is None:
        raise ConfigurationError(
            f"staging connection {staging_conn_id!r} (staging.conn_id of Variable {VARIABLE_KEY!r}) does not exist"
        )
    return {
        "environment": environment,
        "connections": connections,
        "file_roots": file_roots,
        "data_root": str(env_settings.get("data_root") or default_root("data")),
        "staging_root": str(staging.get("root") or default_root("staging")),
        "staging_conn_id": staging_conn_id,
        "metrics_conn_id": settings.get("metrics_conn_id", DEFAULT_METRICS_CONN_ID),
        "job_file_sha256": validated.sha256,
    }


DISTRIBUTED_EXECUTORS = ("Celery", "Kubernetes", "Edge")


def check_staging_declared(settings: dict[str, Any] | None, executor: str) -> None:
    """On executors that run tasks on several hosts, the default staging root (a directory under each
    host's own AIRFLOW_HOME) is not shared: require ``staging.root`` to be set explicitly."""
    root = str(((settings or {}).get("staging") or {}).get("root") or "")
    if not any(name in executor for name in DISTRIBUTED_EXECUTORS):
        return
    if not root:
        raise ConfigurationError(
            f"executor {executor!r} runs tasks on several hosts, but Variable {VARIABLE_KEY!r} sets no "
            "staging.root: set it to a directory on a volume every worker mounts (the default under "
            "AIRFLOW_HOME is each worker's own disk)"
        )


def rooted_path(rendered: str, root: str | Path) -> Path:
    """``rendered`` joined to ``root``; refuses a path that escapes the root."""
    base = Path(os.path.normpath(root))
    candidate = Path(os.path.normpath(base / rendered))
    if candidate != base and base not in candidate.parents:
        raise ConfigurationError(f"path {rendered!r} escapes the data root {str(base)!r}")
    return candidate
