"""The tasks of a job DAG (built by etlkit.jobs.dag): ``_prepare`` (setup) resolves the run context,
``<component_id>`` tasks run one component each, ``_finalize`` (teardown) writes the job metrics. XCom
carries only the ``RunContext`` and ``ComponentSummary``s, wired from ``.output``; data is staged."""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException

from etlkit.common.assets import job_sink, record_asset_event
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


def load_job_file(job_file: str) -> ValidatedJob:
    try:
        return load_job(job_file)
    except JobDefinitionError as error:
        raise AirflowFailException(str(error)) from None


def run_context_of(value: dict | None) -> RunContext:
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
        validated, dag_id, run_id = load_job_file(self.job_file), context["dag"].dag_id, context["run_id"]
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
        run_context, validated = run_context_of(self.run_context), load_job_file(self.job_file)
        if validated.sha256 != run_context.job_file_sha256:
            raise AirflowFailException("the job file changed during the run; clear the run from the sources")
        dag_id, run_id = context["dag"].dag_id, context["run_id"]
        render = lambda value: self.render_template(value, context)  # noqa: E731
        io = hooks.component_io(run_context, render, dag_id, run_id, context["dag_run"].logical_date)
        store = lambda summary: self._store(run_context, context, summary)  # noqa: E731
        try:
            summaries = self._run(validated, io, context["ti"].try_number, store)
        except BadInputError as error:
            raise AirflowFailException(f"{self.task_id}: {error}") from error
        sinks = {job_sink(validated.job.name, c).uri: c for c in summaries}
        for component_id, summary in summaries.items():
            component = validated.components[component_id]
            path = getattr(component.config, "path", None)
            path = str(io.resolve_path(path, component.config.conn)) if path else None
            self.note_lineage(
                job_component_lineage(component, run_context.to_xcom(), path, summary.to_xcom())
            )
        for asset in self.outlets:
            rows = summaries[sinks[asset.uri]].rows_out.get("target", 0)
            record_asset_event(context, asset, {"rows_written": rows})
        return self._to_xcom(summaries)

    def _run(self, validated, io, try_number: int, store) -> dict[str, ComponentSummary]:
        return {
            self.component_id: runs.run_component_try(validated, self.component_id, io, try_number, store)
        }

    def _to_xcom(self, summaries: dict[str, ComponentSummary]) -> dict[str, Any]:
        return summaries[self.component_id].to_xcom()

    @staticmethod
    def _store(run_context: RunContext, context, summary: ComponentSummary) -> None:
        args = (context["dag"].dag_id, context["run_id"], run_context.environment, summary)
        failure = f"write component metrics ({summary.status})"
        hooks.write_metrics(run_context.metrics_conn_id, failure, metrics_store.upsert_component_run, *args)


class FusedJobOperator(DeclarativeComponentOperator):
    """``execution: fused``: every component of the job at once in this one task (``etlkit.jobs.fused``);
    returns the components' summaries by id."""

    def __init__(self, *, job_file: str, run_context: Any, **kwargs):
        super().__init__(job_file=job_file, component_id=runs.FUSED_TASK, run_context=run_context, **kwargs)

    def _run(self, validated, io, try_number: int, store) -> dict[str, ComponentSummary]:
        return runs.run_fused_try(validated, io, try_number, store)

    def _to_xcom(self, summaries: dict[str, ComponentSummary]) -> dict[str, Any]:
        return {component_id: summary.to_xcom() for component_id, summary in summaries.items()}


class FinalizeJobRunOperator(BaseOperator):
    """Writes every component summary and the job row; deletes staging only after full success.

    :param summaries: component id -> that task's summary (``.output``; None when it did not succeed),
        or a fused job's ``_run.output`` (all of them, or None).
    """

    template_fields = ("job_file", "run_context", "summaries")

    def __init__(self, *, job_file: str, run_context: Any, summaries: dict[str, Any], **kwargs):
        super().__init__(**kwargs)
        self.job_file, self.run_context, self.summaries = job_file, run_context, summaries

    def execute(self, context) -> dict[str, Any]:
        run_context, validated = run_context_of(self.run_context), load_job_file(self.job_file)
        given = self.summaries or {}  # a fused job's _run hands on one dict, None when it failed
        summaries = {c: ComponentSummary.from_xcom(s) if s else None for c, s in given.items()}
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
