"""A job run outside its components: ``_prepare`` opens the run's staging and writes the ``running``
job row; ``_finalize`` writes every component's row and the job row. Plain functions on an open
psycopg connection (the operators open it through the metrics connection)."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from etlkit.common.alerting import alert_context
from etlkit.common.errors import BadInputError, ConfigurationError
from etlkit.common.metrics import RunMetrics
from etlkit.jobs import metrics_store
from etlkit.jobs.environment import VARIABLE, RunContext, check_staging_declared, resolve_run_context
from etlkit.jobs.metrics import ComponentMetrics, ComponentSummary, never_ran
from etlkit.jobs.settings import JobsSettings, StagingSettings
from etlkit.jobs.validation import ValidatedJob

log = logging.getLogger(__name__)
FUSED_TASK = "_run"  # the one task of a job with ``execution: fused``


def prepare_run(
    validated: ValidatedJob,
    settings: JobsSettings,
    requested_environment: str | None,
    dag_id: str,
    run_id: str,
    *,
    conn_type_of: Callable[[str], str | None],
    file_root_of: Callable[[str], str | None],
    executor: str,
    record_unprepared: Callable[[str | None], None],
) -> RunContext:
    """``_prepare``: the run context (see ``resolve_run_context``), stamped with this host and the
    start time, with the run's staging opened. ``record_unprepared(environment)`` is called before a
    resolution error propagates: ``_finalize`` (the teardown) does not run when its setup failed."""
    try:
        run_context = resolve_run_context(
            validated, settings, requested_environment, conn_type_of, file_root_of
        )
        check_staging_declared(settings, executor)
    except BadInputError:
        record_unprepared(requested_environment or settings.default_environment)
        raise
    started_at = datetime.now(UTC).isoformat()
    run_context = replace(run_context, prepared_on=socket.gethostname(), started_at=started_at)
    return replace(run_context, run_dir=open_run_staging(run_context, dag_id, run_id))


def open_run_staging(run_context: RunContext, dag_id: str, run_id: str) -> str:
    """Creates the run's staging directory and writes ``_run.json`` there: a write through the staging
    connection, so a missing bucket, unknown or refused credentials fail here, before any data moves.
    Returns the directory as text (``run_context.staging_conn_id`` opens it again)."""
    from etlkit.jobs.staging import ensure_directory, run_directory, run_directory_uri, write_staged_text

    root, conn_id = run_context.staging_root, run_context.staging_conn_id
    try:
        run_dir = run_directory(root, dag_id, run_id, conn_id)
        ensure_directory(run_dir)
        marker = {k: getattr(run_context, k) for k in ("environment", "prepared_on", "started_at")}
        write_staged_text(run_dir / "_run.json", json.dumps(marker))
    except (PermissionError, FileNotFoundError, NotADirectoryError) as error:
        via = f" through connection {conn_id!r}" if conn_id else ""
        raise ConfigurationError(
            f"cannot write to the staging root {root}{via} ({type(error).__name__}: {error}): check that "
            f"the bucket or directory exists and that the credentials{via} may read, write and delete "
            f"under it (staging.root / staging.conn_id of Variable {VARIABLE!r})"
        ) from None
    return run_directory_uri(root, dag_id, run_id)


def remove_expired_staging(staging: StagingSettings) -> dict[str, Any]:
    """Housekeeping: removes staged runs older than ``staging.retention_days``."""
    from etlkit.jobs.staging import remove_stale_staged_runs, staging_path

    root, days = staging.root_or_default(), staging.retention_days
    now = datetime.now(UTC).timestamp()
    removed = remove_stale_staged_runs(staging_path(root, staging.conn_id), days, now=now)
    log.info("removed %d staged runs older than %s days under %s", len(removed), days, root)
    return {"staging_root": root, "removed_runs": len(removed)}


def run_component_try(
    validated: ValidatedJob,
    component_id: str,
    io: Any,
    try_number: int,
    store: Callable[[ComponentSummary], None],
) -> ComponentSummary:
    """One try of a component task: ``store`` gets a ``running`` summary first and the final one in
    any case; the final summary is logged and returned. Errors propagate (the caller judges them)."""
    from etlkit.jobs.runtime import run_component  # pyarrow: not at DAG parse time

    metrics = ComponentMetrics(component_id, validated.components[component_id].type, try_number=try_number)
    store(metrics.snapshot())
    try:
        with alert_context(job=validated.job.name, component=component_id):
            run_component(validated, component_id, io, metrics)
        metrics.finish("success")
    except BaseException as error:
        metrics.finish("failed", error)
        raise
    finally:
        summary = metrics.log()
        store(summary)
    return summary


def run_fused_try(
    validated: ValidatedJob,
    io: Any,
    try_number: int,
    store: Callable[[ComponentSummary], None],
) -> dict[str, ComponentSummary]:
    """One try of a fused job's ``_run`` task: every component at once (see ``etlkit.jobs.fused``).
    ``store`` gets each component's ``running`` summary first and its final one in any case."""
    from etlkit.jobs.fused import FusedJob  # pyarrow: not at DAG parse time

    fused = FusedJob(validated, io, try_number)
    for metrics in fused.metrics.values():
        store(metrics.snapshot())
    try:
        with alert_context(job=validated.job.name, component=FUSED_TASK):
            fused.run()
    finally:
        summaries = {component_id: metrics.log() for component_id, metrics in fused.metrics.items()}
        for summary in summaries.values():
            store(summary)
    return summaries


def job_row(
    validated: ValidatedJob,
    dag_id: str,
    run_id: str,
    status: str,
    *,
    environment: str | None,
    connections: dict[str, str],
    started_at: str,
    job_file_sha256: str,
    totals: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The ``declarative_job_runs`` row; ``finished_at`` and the duration once it is not ``running``."""
    totals = totals or {}
    finished = datetime.now(UTC) if status != "running" else None
    started = datetime.fromisoformat(started_at)
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "job_name": validated.job.name,
        "environment": environment,
        "connections": connections,
        "job_file_sha256": job_file_sha256,
        "status": status,
        "started_at": started,
        "finished_at": finished,
        "duration_s": round((finished - started).total_seconds(), 3) if finished else None,
        **{k: totals.get(k, 0) for k in ("rows_read", "rows_written", "rows_rejected", "rows_dropped")},
    }


def _audit(run_context: RunContext) -> dict[str, Any]:
    keys = ("environment", "connections", "started_at", "job_file_sha256")
    return {k: getattr(run_context, k) for k in keys}


def record_running(connection, validated: ValidatedJob, dag_id: str, run_id: str, run_context: RunContext):
    metrics_store.ensure_tables(connection)
    metrics_store.upsert_job_run(
        connection, job_row(validated, dag_id, run_id, "running", **_audit(run_context))
    )


def record_unprepared(connection, validated: ValidatedJob, dag_id: str, run_id: str, environment: str | None):
    """A failed job row and ``upstream_failed`` component rows for a run whose context never resolved."""
    metrics_store.ensure_tables(connection)
    for component_id in validated.order:
        summary = never_ran(component_id, validated.components[component_id].type)
        metrics_store.upsert_component_run(connection, dag_id, run_id, environment, summary)
    row = job_row(
        validated,
        dag_id,
        run_id,
        "failed",
        environment=environment,
        connections={},
        started_at=datetime.now(UTC).isoformat(),
        job_file_sha256=validated.sha256,
    )
    metrics_store.upsert_job_run(connection, row)


def finalize_run(
    connection,
    validated: ValidatedJob,
    dag_id: str,
    run_id: str,
    run_context: RunContext,
    summaries: dict[str, ComponentSummary | None],
) -> tuple[dict[str, Any], bool]:
    """Rewrites every summary handed on, closes tries that never recorded their end, marks components
    that never ran ``upstream_failed`` and writes the job row. Returns (job row, every component succeeded)."""
    environment = run_context.environment
    metrics_store.ensure_tables(connection)
    for summary in summaries.values():
        if summary is not None:
            metrics_store.upsert_component_run(connection, dag_id, run_id, environment, summary)
    for component_id, try_number in metrics_store.close_lost_component_runs(connection, dag_id, run_id):
        log.warning("%s try %s ended without recording a result: marked failed", component_id, try_number)
    latest = metrics_store.latest_component_runs(connection, dag_id, run_id)
    for component_id in validated.order:
        if component_id not in latest:
            summary = never_ran(component_id, validated.components[component_id].type)
            metrics_store.upsert_component_run(connection, dag_id, run_id, environment, summary)
    latest = metrics_store.latest_component_runs(connection, dag_id, run_id)
    succeeded = all(latest[c]["status"] == "success" for c in validated.order)
    totals = metrics_store.job_totals(latest)
    status = "success" if succeeded else "failed"
    row = job_row(validated, dag_id, run_id, status, totals=totals, **_audit(run_context))
    metrics_store.upsert_job_run(connection, row)
    job_metrics(row).log(run_id=run_id, task="_finalize")
    return row, succeeded


def job_metrics(row: dict[str, Any]) -> RunMetrics:
    """The job run as every pipeline reports one (``ETL_METRICS``): read by sources, written by writers."""
    extra = {k: row[k] for k in ("dag_id", "job_name", "environment", "status", "rows_dropped")}
    return RunMetrics(
        "jobs",
        rows_read=row["rows_read"],
        rows_loaded=row["rows_written"],
        rows_rejected=row["rows_rejected"],
        extra=extra,
    )
