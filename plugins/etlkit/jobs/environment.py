"""Per-run resolution of logical connection names and roots (the ``declarative_jobs`` settings).

Resolved once by ``_prepare`` and handed to every component task as XCom (``RunContext``), so
editing the Variable mid-run does not affect a run. The context holds conn ids and paths, never secrets.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from etlkit.common.errors import ConfigurationError
from etlkit.jobs.settings import EnvironmentSettings, JobsSettings, default_root
from etlkit.jobs.validation import SOURCE_TYPES, WRITER_TYPES, ValidatedJob
from etlkit.jobs.xcom import XComValue

SQL_CONN_TYPES = ("postgres",)
FILE_CONN_TYPES = ("fs",)
VARIABLE = JobsSettings.VARIABLE


@dataclass(frozen=True)
class RunContext(XComValue):
    """What ``_prepare`` resolved for one run; the XCom ``return_value`` of ``_prepare``."""

    environment: str | None
    connections: dict[str, str]  # logical name -> connection id
    file_roots: dict[str, str]  # logical name of an fs connection -> its root path
    data_root: str
    staging_root: str
    staging_conn_id: str | None
    metrics_conn_id: str
    job_file_sha256: str
    prepared_on: str | None = None  # the host that ran _prepare (named when staging is not shared)
    started_at: str | None = None  # ISO timestamp, UTC
    run_dir: str | None = None  # the run's staging directory (opened again with staging_conn_id)

    def file_path(self, rendered: str, conn: str | None) -> Path:
        """A file component's rendered path under its root (its fs connection's, else the
        environment's ``data_root``); a path that escapes the root is refused."""
        return rooted_path(rendered, self.file_roots[conn] if conn else self.data_root)


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


def resolve_run_context(
    validated: ValidatedJob,
    settings: JobsSettings,
    requested_environment: str | None,
    conn_type_of: Callable[[str], str | None],
    file_root_of: Callable[[str], str | None],
) -> RunContext:
    """The run context; raises ConfigurationError naming the environment and the logical name.

    ``conn_type_of(conn_id)`` gives the connection's type or None when it does not exist;
    ``file_root_of(conn_id)`` gives an fs connection's root path.
    """
    environments = settings.environments
    environment = requested_environment or settings.default_environment
    if environments:
        if environment not in environments:
            raise ConfigurationError(
                f"environment {environment!r} is not configured in Variable {VARIABLE!r}; "
                f"configured: {', '.join(sorted(environments))}"
            )
        env_settings = environments[environment]
    elif requested_environment:
        raise ConfigurationError(
            f"environment {requested_environment!r} requested but Variable {VARIABLE!r} defines no environments"
        )
    else:
        env_settings = EnvironmentSettings()
    mapping = env_settings.connections
    connections: dict[str, str] = {}
    file_roots: dict[str, str] = {}
    for logical, kind in logical_connections(validated).items():
        if mapping is not None and logical not in mapping:
            raise ConfigurationError(
                f"environment {environment!r}: logical connection name {logical!r} is not mapped in Variable "
                f"{VARIABLE!r}"
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
    staging_conn_id = settings.staging.conn_id
    if staging_conn_id and conn_type_of(staging_conn_id) is None:
        raise ConfigurationError(
            f"staging connection {staging_conn_id!r} (staging.conn_id of Variable {VARIABLE!r}) does not exist"
        )
    return RunContext(
        environment=environment,
        connections=connections,
        file_roots=file_roots,
        data_root=str(env_settings.data_root or default_root("data")),
        staging_root=settings.staging.root_or_default(),
        staging_conn_id=staging_conn_id,
        metrics_conn_id=settings.metrics_conn_id,
        job_file_sha256=validated.sha256,
    )


DISTRIBUTED_EXECUTORS = ("Celery", "Kubernetes", "Edge")


def check_staging_declared(settings: JobsSettings, executor: str) -> None:
    """On executors that run tasks on several hosts, the default staging root (a directory under each
    host's own AIRFLOW_HOME) is not shared: require ``staging.root`` to be set explicitly."""
    if not any(name in executor for name in DISTRIBUTED_EXECUTORS):
        return
    if not settings.staging.root:
        raise ConfigurationError(
            f"executor {executor!r} runs tasks on several hosts, but Variable {VARIABLE!r} sets no "
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
