"""The DAG of a declarative job, built from its validated file: ``_prepare`` → one task per
component (routes become dependencies; a ``wait_for_input`` sensor before a reader that asks for
one), or with ``execution: fused`` one ``_run`` task for them all → ``_finalize`` as the teardown.
Schedules, retries and docs come from the job file.

Airflow is imported inside the functions, so this package stays importable (and testable) without it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from etlkit.common.errors import BadInputError
from etlkit.jobs.models import duration_seconds
from etlkit.jobs.settings import JobsSettings
from etlkit.jobs.validation import WRITER_TYPES, ValidatedJob, load_job

PREPARE_TASK = "_prepare"
FINALIZE_TASK = "_finalize"
JOB_TAG = "declarative-job"
ENVIRONMENTS = ["DEV", "TEST", "PROD"]


# Errors a retry cannot fix: the same data and SQL fail the same way (values that do not fit a
# column or a constraint, SQL that names missing objects, undecodable or malformed files).
# Lock timeouts and deadlocks are OperationalErrors and still retry.
DETERMINISTIC_ERRORS = (
    BadInputError,
    "psycopg.errors.DataError",
    "psycopg.errors.IntegrityError",
    "psycopg.errors.ProgrammingError",
    UnicodeDecodeError,
    csv.Error,
)


def _default_args(validated: ValidatedJob) -> dict[str, Any]:
    from airflow.sdk import ExceptionRetryPolicy
    from airflow.sdk.definitions.retry_policy import RetryAction, RetryRule

    from etlkit.common.alerting import log_task_failure

    job = validated.job
    # The job file owns its retry settings: anything not listed in DETERMINISTIC_ERRORS takes
    # Airflow's standard retry with the job's delay and backoff (AirflowFailException always fails).
    return {
        "retry_policy": ExceptionRetryPolicy(
            rules=[
                RetryRule(
                    exception=list(DETERMINISTIC_ERRORS),
                    action=RetryAction.FAIL,
                    reason="deterministic error, not retried",
                )
            ]
        ),
        "owner": job.owner,
        "retries": job.retries,
        "retry_delay": timedelta(seconds=job.retry_delay_seconds),
        "retry_exponential_backoff": 2.0 if job.retry_exponential_backoff else 0,
        "max_retry_delay": timedelta(seconds=job.max_retry_delay_seconds),
        "execution_timeout": timedelta(minutes=job.task_timeout_minutes)
        if job.task_timeout_minutes
        else None,
        "on_failure_callback": log_task_failure,
        "on_retry_callback": log_task_failure,
    }


def _doc_md(validated: ValidatedJob) -> str:
    job = validated.job
    lines = [
        f"# {job.name}",
        "",
        job.description or "Declarative job.",
        "",
        f"Job file: `{validated.file.name}`",
        "",
    ]
    lines += [f"- `{c.id}` ({c.type}) {c.description}".rstrip() for c in job.components]
    return "\n".join(lines)


def _timetable(job):
    """``schedule`` as written (cron or preset); ``every`` as a timedelta, which Airflow turns into a
    DeltaTriggerTimetable (or DeltaDataIntervalTimetable with ``[scheduler] create_cron_data_intervals``,
    as it does for cron); ``once_at`` as ``@once`` from that moment (see ``_start_date``).

    Not EventsTimetable: on 3.3.2 a DAG with one fails to serialize (the SDK encoder writes no
    ``_summary``, which the core decoder requires), so the dag-processor would record an import error.
    """
    if job.on_asset is not None:
        from airflow.sdk import Asset

        return [Asset.ref(uri=job.on_asset)]
    if job.every is not None:
        return job.every_timedelta()
    if job.once_at is not None:
        return "@once"
    return job.schedule


def _start_date(job):
    """Midnight of ``start_date`` in the job's zone; for ``once_at``, that moment: ``@once`` runs once,
    at the DAG's start_date, as soon as it has passed (also when it passed before the DAG was unpaused)."""
    import pendulum

    once_at = job.once_at_datetime()
    if once_at is not None:
        return pendulum.instance(once_at)
    if job.start_date is None:
        return None
    return pendulum.datetime(job.start_date.year, job.start_date.month, job.start_date.day, tz=job.timezone)


def build_job_dag(validated: ValidatedJob):
    from airflow.sdk import DAG, Param

    from etlkit.operators.jobs import FinalizeJobRunOperator, PrepareJobRunOperator

    job = validated.job
    job_file = str(validated.file)
    dag = DAG(
        dag_id=job.name,
        description=(job.description or None),
        doc_md=_doc_md(validated),
        schedule=_timetable(job),
        start_date=_start_date(job),
        catchup=job.catchup,
        max_active_runs=job.max_active_runs,
        tags=sorted({*job.tags, JOB_TAG}),
        default_args=_default_args(validated),
        # `environment` is run-only: it picks one of the settings' environments for this run (read
        # from the run's conf); JobsSettings.default_environment is what a run without it uses.
        params={
            **JobsSettings.dag_params(),
            "environment": Param(None, type=["null", "string"], enum=[None, *ENVIRONMENTS]),
        },
    )
    with dag:
        prepare = PrepareJobRunOperator(task_id=PREPARE_TASK, job_file=job_file)
        # Every task takes the run context from _prepare's XCom (``prepare.output``), which also
        # makes _prepare a direct upstream of each of them.
        build = _fused_tasks if job.execution == "fused" else _component_tasks
        summaries = build(validated, job_file, prepare.output)
        finalize = FinalizeJobRunOperator(
            task_id=FINALIZE_TASK, job_file=job_file, run_context=prepare.output, summaries=summaries
        )
        finalize.as_teardown(setups=prepare)
    return dag


def _component_tasks(validated: ValidatedJob, job_file: str, run_context) -> dict[str, Any]:
    """``execution: tasks``: a task per component, routes as dependencies; their summaries' XComArgs."""
    from etlkit.common.assets import job_sink
    from etlkit.operators.jobs import DeclarativeComponentOperator

    tasks = {}
    for component in validated.job.components:
        overrides = {"retries": component.retries} if component.retries is not None else {}
        if component.type in WRITER_TYPES:
            overrides["outlets"] = [job_sink(validated.job.name, component.id)]
        tasks[component.id] = DeclarativeComponentOperator(
            job_file=job_file, component_id=component.id, run_context=run_context, **overrides
        )
    for component_id, wait in _input_sensors(validated, job_file, run_context):
        wait >> tasks[component_id]
    for component in validated.job.components:
        for targets in component.routes.values():
            for target in targets:
                tasks[component.id] >> tasks[target.partition(".")[0]]
    return {component_id: task.output for component_id, task in tasks.items()}


def _fused_tasks(validated: ValidatedJob, job_file: str, run_context):
    """``execution: fused``: one ``_run`` task for every component, after the readers' sensors."""
    from etlkit.common.assets import job_sink
    from etlkit.operators.jobs import FusedJobOperator

    job = validated.job
    sinks = [job_sink(job.name, c.id) for c in job.components if c.type in WRITER_TYPES]
    run = FusedJobOperator(job_file=job_file, run_context=run_context, outlets=sinks)
    for _, wait in _input_sensors(validated, job_file, run_context):
        wait >> run
    return run.output


def _input_sensors(validated: ValidatedJob, job_file: str, run_context) -> Iterator[tuple[str, Any]]:
    """(reader id, its sensor) for every source component whose config has ``wait_for_input``."""
    from etlkit.operators.job_sensors import WaitForInputSensor

    for component in validated.job.components:
        wait = getattr(component.config, "wait_for_input", None)
        if wait is None or validated.inputs[component.id]:
            continue
        sensor = WaitForInputSensor(
            task_id=f"_wait_{component.id}",
            job_file=job_file,
            component_id=component.id,
            run_context=run_context,
            timeout=duration_seconds(wait.timeout),
            poke_interval=duration_seconds(wait.poke_interval),
        )
        yield component.id, sensor


def load_job_dag(loader_file: str):
    """Called by ``dags/jobs/<name>.py``: validates ``<name>.json`` next to it and builds the DAG.

    No network I/O and no Variable or Connection lookups: those happen in ``_prepare``.
    """
    return build_job_dag(load_job(Path(loader_file).with_suffix(".json")))
