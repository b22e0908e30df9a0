"""The tasks of a job DAG (built by etlkit.jobs.dag): ``_prepare`` (setup) resolves the run context,
``<component_id>`` tasks run one component each, ``_finalize`` (teardown) writes the job metrics. XCom
carries only the ``RunContext`` and ``ComponentSummary``s, wired from ``.output``; data is staged."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, BaseSensorOperator
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException

from etlkit.common.assets import record_asset_event
from etlkit.common.errors import BadInputError
from etlkit.common.lineage import LineageReporting, job_component_lineage
from etlkit.hooks import jobs as hooks
from etlkit.jobs import metrics_store, runs
from etlkit.jobs.dag import PREPARE_TASK, build_job_dag, load_job_dag
from etlkit.jobs.environment import RunContext
from etlkit.jobs.metrics import ComponentSummary
from etlkit.jobs.settings import JobsSettings
from etlkit.jobs.validation import JobDefinitionError, ValidatedJob, load_job

log = logging.getLogger(__name__)

__all__ = ["build_job_dag", "load_job_dag"]  # loaders written before etlkit.jobs.dag existed import them here


def _load(job_file: str) -> ValidatedJob:
    try:
        return load_job(job_file)
    except JobDefinitionError as error:
        raise AirflowFailException(str(error)) from None


def _run_context(value: dict | None) -> RunContext:
    if not value:
        raise AirflowFailException(f"no run context from {PREPARE_TASK}; clear the run from {PREPARE_TASK}")
    return RunContext.from_xcom(value)


class PrepareJobRunOperator(BaseOperator):
    """Resolves environment, conn ids and roots once per run; idempotent, never deletes staging."""

    template_fields = ("job_file",)

    def __init__(self, *, job_file: str, settings_defaults: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.job_file, self.settings_defaults = job_file, settings_defaults

    def execute(self, context) -> dict[str, Any]:
        validated, dag_id, run_id = _load(self.job_file), context["dag"].dag_id, context["run_id"]
        # The run's own conf, not context["params"]: params fall back to the DAG default for the UI only.
        requested = (context["dag_run"].conf or {}).get("environment")
        try:
            settings = JobsSettings.resolve(context, defaults=self.settings_defaults)
            run_context = runs.prepare_run(
                *(validated, settings, requested, dag_id, run_id),
                conn_type_of=hooks.connection_type,
                file_root_of=lambda conn_id: hooks.JobFilesHook(conn_id).get_conn(),
                executor=conf.get("core", "executor", fallback="") or "",
                record_unprepared=lambda environment: hooks.write_metrics(
                    settings.metrics_conn_id,
                    "record the failed run in the metrics tables",
                    *(runs.record_unprepared, validated, dag_id, run_id, environment),
                ),
            )
        except BadInputError as error:
            raise AirflowFailException(str(error)) from None
        log.info(
            "run context: environment=%s connections=%s data_root=%s staging=%s",
            *(run_context.environment, run_context.connections, run_context.data_root, run_context.run_dir),
        )
        hooks.write_metrics(
            run_context.metrics_conn_id,
            "write the running job row",
            *(runs.record_running, validated, dag_id, run_id, run_context),
        )
        return run_context.to_xcom()


class DeclarativeComponentOperator(LineageReporting, BaseOperator):
    """Runs one component of a job; SQL components connect only through Airflow connections."""

    template_fields = ("job_file", "run_context")

    def __init__(self, *, job_file: str, component_id: str, run_context: Any, **kwargs):
        super().__init__(task_id=component_id, **kwargs)
        self.job_file, self.component_id, self.run_context = job_file, component_id, run_context

    def execute(self, context) -> dict[str, Any]:
        run_context, validated = _run_context(self.run_context), _load(self.job_file)
        if validated.sha256 != run_context.job_file_sha256:
            raise AirflowFailException("the job file changed during the run; clear the run from the sources")
        dag_id, run_id = context["dag"].dag_id, context["run_id"]
        render = lambda value: self.render_template(value, context)  # noqa: E731
        io = hooks.component_io(run_context, render, dag_id, run_id, context["dag_run"].logical_date)
        try:
            summary = runs.run_component_try(
                *(validated, self.component_id, io, context["ti"].try_number),
                store=lambda summary: self._store(run_context, context, summary),
            )
        except BadInputError as error:
            raise AirflowFailException(f"{self.component_id}: {error}") from error
        component = validated.components[self.component_id]
        path = getattr(component.config, "path", None)
        path = str(io.resolve_path(path, component.config.conn)) if path else None
        self.note_lineage(job_component_lineage(component, run_context.to_xcom(), path, summary.to_xcom()))
        for asset in self.outlets:
            record_asset_event(context, asset, {"rows_written": summary.rows_out.get("target", 0)})
        return summary.to_xcom()

    @staticmethod
    def _store(run_context: RunContext, context, summary: ComponentSummary) -> None:
        args = (context["dag"].dag_id, context["run_id"], run_context.environment, summary)
        failure = f"write component metrics ({summary.status})"
        hooks.write_metrics(run_context.metrics_conn_id, failure, metrics_store.upsert_component_run, *args)


class WaitForInputSensor(BaseSensorOperator):
    """Waits, in reschedule mode (no worker slot held between checks), until a reader's input exists.

    After ``timeout`` the task fails without retries, naming the file it waited for.
    """

    template_fields = ("job_file", "run_context")

    def __init__(self, *, job_file: str, component_id: str, run_context: Any, **kwargs):
        super().__init__(mode="reschedule", **kwargs)
        self.job_file, self.component_id, self.run_context = job_file, component_id, run_context
        self._waited_for: Path | None = None

    def poke(self, context) -> bool:
        run_context = _run_context(self.run_context)
        config = _load(self.job_file).components[self.component_id].config
        try:
            self._waited_for = run_context.file_path(self.render_template(config.path, context), config.conn)
        except BadInputError as error:
            raise AirflowFailException(f"{self.component_id}: {error}") from None
        from etlkit.jobs.components import matching_files  # pyarrow: not at DAG parse time

        found = matching_files(self._waited_for)
        log.info("%s: %s %s", self.component_id, self._waited_for, "found" if found else "not there yet")
        return bool(found)

    def execute(self, context) -> Any:
        from airflow.sdk.exceptions import AirflowSensorTimeout

        try:
            return super().execute(context)
        except AirflowSensorTimeout as error:
            raise AirflowSensorTimeout(
                f"{self.component_id}: input file {self._waited_for} did not appear within "
                f"{timedelta(seconds=self.timeout)}; place the file and clear {self.task_id}, or check the "
                f"upstream export ({error})"
            ) from None


class FinalizeJobRunOperator(BaseOperator):
    """Writes every component summary and the job row; deletes staging only after full success.

    :param summaries: component id -> that task's summary (``.output``; None when it did not succeed).
    """

    template_fields = ("job_file", "run_context", "summaries")

    def __init__(self, *, job_file: str, run_context: Any, summaries: dict[str, Any], **kwargs):
        super().__init__(**kwargs)
        self.job_file, self.run_context, self.summaries = job_file, run_context, summaries

    def execute(self, context) -> dict[str, Any]:
        run_context, validated = _run_context(self.run_context), _load(self.job_file)
        summaries = {c: ComponentSummary.from_xcom(s) if s else None for c, s in self.summaries.items()}
        with hooks.postgres_session(run_context.metrics_conn_id) as connection:
            args = (validated, context["dag"].dag_id, context["run_id"], run_context, summaries)
            row, succeeded = runs.finalize_run(connection, *args)
        if succeeded:
            from etlkit.jobs.staging import remove_tree, staging_path

            remove_tree(staging_path(run_context.run_dir, run_context.staging_conn_id))
        log.info("DECLARATIVE_JOB_METRICS %s", json.dumps(row, default=str, sort_keys=True))
        return {k: v for k, v in row.items() if k not in ("started_at", "finished_at")}


class StagingHousekeepingOperator(BaseOperator):
    """Removes staged run outputs older than ``staging.retention_days`` of the jobs settings."""

    def __init__(self, *, settings_defaults: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.settings_defaults = settings_defaults

    def execute(self, context) -> dict[str, Any]:
        return runs.remove_expired_staging(
            JobsSettings.resolve(context, defaults=self.settings_defaults).staging
        )
