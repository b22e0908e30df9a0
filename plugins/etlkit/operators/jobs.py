"""Declarative jobs in Airflow: the three task kinds of a job DAG (the DAG itself: etlkit.jobs.dag).

``_prepare`` (setup) resolves the run context, ``<component_id>`` tasks run one component
each, ``_finalize`` (teardown) writes the job metrics. Data moves between tasks as staged
files; XCom carries only the run context and metric summaries.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook, BaseOperator, BaseSensorOperator

from etlkit.common.alerting import alert_context
from etlkit.common.assets import record_asset_event
from etlkit.common.errors import BadInputError, ConfigurationError, TransientError
from etlkit.common.lineage import LineageReporting, job_component_lineage
from etlkit.jobs import metrics_store
from etlkit.jobs.dag import PREPARE_TASK, build_job_dag, load_job_dag
from etlkit.jobs.environment import (
    DEFAULT_METRICS_CONN_ID,
    VARIABLE_KEY,
    check_settings,
    check_staging_declared,
    default_root,
    resolve_run_context,
    rooted_path,
)
from etlkit.jobs.metrics import ComponentMetrics
from etlkit.jobs.validation import JobDefinitionError, ValidatedJob, load_job

log = logging.getLogger(__name__)

__all__ = ["build_job_dag", "load_job_dag"]  # loaders written before etlkit.jobs.dag existed import them here


def _fail(message: str):
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


def _load(job_file: str) -> ValidatedJob:
    try:
        return load_job(job_file)
    except JobDefinitionError as error:
        raise _fail(str(error)) from None


@contextlib.contextmanager
def _postgres(conn_id: str):
    from etlkit.hooks.postgres import EtlPostgresHook

    connection = EtlPostgresHook(conn_id, application_name="etlkit_jobs").get_conn()
    # Every unit of work opens its own ``connection.transaction()``; nothing is left implicit.
    connection.autocommit = True
    try:
        yield connection
    finally:
        connection.close()


def _conn_type(conn_id: str) -> str | None:
    """The connection's type; None only when every secrets backend answered that it has no ``conn_id``.

    Any other failure of the lookup (a secrets backend down or timing out) is a TransientError,
    so the task is retried instead of failing for good with "connection does not exist".
    """
    from airflow.sdk.exceptions import AirflowNotFoundException, AirflowSecretsBackendAccessDenied

    try:
        return BaseHook.get_connection(conn_id).conn_type
    except AirflowSecretsBackendAccessDenied as error:
        raise ConfigurationError(
            f"access to connection {conn_id!r} was denied by the secrets backend: grant this task access to it"
        ) from error
    except AirflowNotFoundException:
        # The SDK skips a backend that raised and reports "isn't defined" when no later one has the id.
        if failure := _secrets_backend_failure(conn_id):
            backend, error = failure
            raise TransientError(
                f"looking up connection {conn_id!r} failed in secrets backend {backend} "
                f"({type(error).__name__}); it is not reported as missing, the task is retried"
            ) from error
        return None


def _secrets_backend_failure(conn_id: str) -> tuple[str, Exception] | None:
    """(backend name, error) of the first secrets backend that fails to answer for ``conn_id``."""
    from airflow.sdk.execution_time.secrets.execution_api import ExecutionAPISecretsBackend
    from airflow.sdk.execution_time.supervisor import ensure_secrets_backend_loaded

    for backend in ensure_secrets_backend_loaded():
        try:
            if isinstance(backend, ExecutionAPISecretsBackend):
                _ask_execution_api(conn_id)
            else:
                backend.get_connection(conn_id=conn_id)
        except Exception as error:
            return type(backend).__name__, error
    return None


def _ask_execution_api(conn_id: str) -> None:
    """The API server's answer for ``conn_id``: a missing connection is an error reply, while a
    failure of the API server raises (the backend class itself turns both into None)."""
    from airflow.sdk.execution_time.comms import GetConnection
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    SUPERVISOR_COMMS.send(GetConnection(conn_id=conn_id))


def _file_root(conn_id: str) -> str | None:
    return BaseHook.get_connection(conn_id).extra_dejson.get("path")


def _executor() -> str:
    from airflow.sdk.configuration import conf

    return conf.get("core", "executor", fallback="") or ""


def _read_settings() -> dict[str, Any] | None:
    from airflow.sdk import Variable

    raw = Variable.get(VARIABLE_KEY, default=None)
    if raw is None:
        return None
    return raw if isinstance(raw, dict) else json.loads(raw)


class PrepareJobRunOperator(BaseOperator):
    """Resolves environment, conn ids and roots once per run; idempotent, never deletes staging."""

    template_fields = ("job_file",)

    def __init__(self, *, job_file: str, **kwargs):
        super().__init__(**kwargs)
        self.job_file = job_file

    def execute(self, context) -> dict[str, Any]:
        validated = _load(self.job_file)
        # The run's own conf, not context["params"]: params fall back to the DAG default for the UI only.
        requested = (context["dag_run"].conf or {}).get("environment")
        settings = _read_settings()
        try:
            run_context = resolve_run_context(validated, settings, requested, _conn_type, _file_root)
            check_staging_declared(settings, _executor())
        except BadInputError as error:
            # _finalize (the teardown) does not run when its setup fails: record the failed run here.
            _record_unprepared_run(validated, context, settings or {}, requested)
            raise _fail(str(error)) from None
        run_context["prepared_on"] = socket.gethostname()
        run_context["started_at"] = datetime.now(UTC).isoformat()
        run_dir = _open_run_staging(run_context, context["dag"].dag_id, context["run_id"])
        run_context["run_dir"] = run_dir
        log.info(
            "run context: environment=%s connections=%s data_root=%s staging=%s",
            run_context["environment"],
            run_context["connections"],
            run_context["data_root"],
            run_dir,
        )
        try:
            with _postgres(run_context["metrics_conn_id"]) as connection:
                metrics_store.ensure_tables(connection)
                metrics_store.upsert_job_run(
                    connection, _job_row(validated, context, run_context, "running", {})
                )
        except Exception as error:
            log.warning("could not write the running job row: %s", error)
        return run_context


def _open_run_staging(run_context: dict[str, Any], dag_id: str, run_id: str) -> str:
    """Creates the run's staging directory and writes ``_run.json`` there: a write through the staging
    connection, so a missing bucket, unknown or refused credentials fail here, before any data moves.
    Returns the directory as text (``run_context["staging_conn_id"]`` opens it again)."""
    from etlkit.jobs.staging import ensure_directory, run_directory, run_directory_uri, write_staged_text

    root, conn_id = run_context["staging_root"], run_context.get("staging_conn_id")
    uri = run_directory_uri(root, dag_id, run_id)
    try:
        run_dir = run_directory(root, dag_id, run_id, conn_id)
        ensure_directory(run_dir)
        marker = {k: run_context[k] for k in ("environment", "prepared_on", "started_at")}
        write_staged_text(run_dir / "_run.json", json.dumps(marker))
    except (PermissionError, FileNotFoundError, NotADirectoryError) as error:
        via = f" through connection {conn_id!r}" if conn_id else ""
        raise _fail(
            f"cannot write to the staging root {root}{via} ({type(error).__name__}: {error}): check that "
            f"the bucket or directory exists and that the credentials{via} may read, write and delete "
            f"under it (staging.root / staging.conn_id of Variable {VARIABLE_KEY!r})"
        ) from None
    return uri


def _job_row(validated, context, run_context, status: str, totals: dict[str, int]) -> dict[str, Any]:
    finished = datetime.now(UTC) if status != "running" else None
    started = datetime.fromisoformat(run_context["started_at"])
    return {
        "dag_id": context["dag"].dag_id,
        "run_id": context["run_id"],
        "job_name": validated.job.name,
        "environment": run_context["environment"],
        "connections": run_context["connections"],
        "job_file_sha256": run_context["job_file_sha256"],
        "status": status,
        "started_at": started,
        "finished_at": finished,
        "duration_s": round((finished - started).total_seconds(), 3) if finished else None,
        "rows_read": totals.get("rows_read", 0),
        "rows_written": totals.get("rows_written", 0),
        "rows_rejected": totals.get("rows_rejected", 0),
        "rows_dropped": totals.get("rows_dropped", 0),
    }


class DeclarativeComponentOperator(LineageReporting, BaseOperator):
    """Runs one component of a job; SQL components connect only through Airflow connections."""

    template_fields = ("job_file",)

    def __init__(self, *, job_file: str, component_id: str, **kwargs):
        super().__init__(task_id=component_id, **kwargs)
        self.job_file = job_file
        self.component_id = component_id

    def execute(self, context) -> dict[str, Any]:
        run_context = context["ti"].xcom_pull(task_ids=PREPARE_TASK)
        if not run_context:
            raise _fail(f"no run context from {PREPARE_TASK}; clear the run from {PREPARE_TASK}")
        validated = _load(self.job_file)
        component = validated.components[self.component_id]
        if validated.sha256 != run_context["job_file_sha256"]:
            raise _fail("the job file changed during the run; clear the run from the sources")
        from etlkit.jobs.runtime import RuntimeIO, run_component  # pyarrow: not at DAG parse time
        from etlkit.jobs.sqlwrite import logical_run_key
        from etlkit.jobs.staging import staging_path

        metrics = ComponentMetrics(self.component_id, component.type, try_number=context["ti"].try_number)
        self._store(run_context, context, metrics.summary())
        io = RuntimeIO(
            run_dir=staging_path(run_context["run_dir"], run_context.get("staging_conn_id")),
            resolve_path=lambda path, conn: self._resolve_path(path, conn, run_context, context),
            sql_connection=lambda conn: _postgres(run_context["connections"][conn]),
            render=lambda value: self.render_template(value, context),
            staging_root=run_context["staging_root"],
            prepared_on=run_context.get("prepared_on"),
            run_key=logical_run_key(
                context["dag"].dag_id, context["run_id"], context["dag_run"].logical_date
            ),
        )
        try:
            with alert_context(job=validated.job.name, component=self.component_id):
                run_component(validated, self.component_id, io, metrics)
            metrics.finish("success")
            self._note_lineage_and_asset(component, run_context, context, metrics.summary())
        except BadInputError as error:
            metrics.finish("failed", error)
            raise _fail(f"{self.component_id}: {error}") from error
        except BaseException as error:
            metrics.finish("failed", error)
            raise
        finally:
            summary = metrics.log()
            self._store(run_context, context, summary)
        return summary

    def _note_lineage_and_asset(self, component, run_context: dict, context, summary: dict) -> None:
        path = getattr(component.config, "path", None)
        if path:
            path = str(self._resolve_path(path, component.config.conn, run_context, context))
        self.note_lineage(job_component_lineage(component, run_context, path, summary))
        for asset in self.outlets:
            record_asset_event(context, asset, {"rows_written": summary["rows_out"].get("target", 0)})

    def _resolve_path(self, path: str, conn: str | None, run_context: dict, context) -> Path:
        rendered = self.render_template(path, context)
        root = run_context["file_roots"][conn] if conn else run_context["data_root"]
        return rooted_path(rendered, root)

    @staticmethod
    def _store(run_context: dict, context, summary: dict) -> None:
        try:
            with _postgres(run_context["metrics_conn_id"]) as connection:
                metrics_store.upsert_component_run(
                    connection, context["dag"].dag_id, context["run_id"], run_context["environment"], summary
                )
        except Exception as error:
            log.warning("could not write component metrics (%s): %s", summary["status"], error)


class WaitForInputSensor(BaseSensorOperator):
    """Waits, in reschedule mode (no worker slot held between checks), until a reader's input exists.

    After ``timeout`` the task fails without retries, naming the file it waited for.
    """

    template_fields = ("job_file",)

    def __init__(self, *, job_file: str, component_id: str, **kwargs):
        super().__init__(mode="reschedule", **kwargs)
        self.job_file = job_file
        self.component_id = component_id
        self._waited_for: Path | None = None

    def poke(self, context) -> bool:
        run_context = context["ti"].xcom_pull(task_ids=PREPARE_TASK)
        if not run_context:
            raise _fail(f"no run context from {PREPARE_TASK}; clear the run from {PREPARE_TASK}")
        config = _load(self.job_file).components[self.component_id].config
        root = run_context["file_roots"][config.conn] if config.conn else run_context["data_root"]
        try:
            self._waited_for = rooted_path(self.render_template(config.path, context), root)
        except BadInputError as error:
            raise _fail(f"{self.component_id}: {error}") from None
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


def wait_task_id(component_id: str) -> str:
    return f"_wait_{component_id}"


class FinalizeJobRunOperator(BaseOperator):
    """Writes every component summary and the job row; deletes staging only after full success."""

    template_fields = ("job_file",)

    def __init__(self, *, job_file: str, **kwargs):
        super().__init__(**kwargs)
        self.job_file = job_file

    def execute(self, context) -> dict[str, Any]:
        ti = context["ti"]
        run_context = ti.xcom_pull(task_ids=PREPARE_TASK)
        if not run_context:
            raise _fail(f"{PREPARE_TASK} produced no run context; nothing ran")
        validated = _load(self.job_file)
        dag_id, run_id = context["dag"].dag_id, context["run_id"]
        with _postgres(run_context["metrics_conn_id"]) as connection:
            metrics_store.ensure_tables(connection)
            for component_id in validated.order:
                summary = ti.xcom_pull(task_ids=component_id)
                if summary:
                    metrics_store.upsert_component_run(
                        connection, dag_id, run_id, run_context["environment"], summary
                    )
            for component_id, try_number in metrics_store.close_lost_component_runs(
                connection, dag_id, run_id
            ):
                log.warning(
                    "%s try %s ended without recording a result: marked failed", component_id, try_number
                )
            latest = metrics_store.latest_component_runs(connection, dag_id, run_id)
            for component_id in validated.order:
                if component_id not in latest:
                    never_ran = ComponentMetrics(
                        component_id, validated.components[component_id].type, try_number=0
                    )
                    never_ran.finish("upstream_failed")
                    metrics_store.upsert_component_run(
                        connection, dag_id, run_id, run_context["environment"], never_ran.summary()
                    )
            latest = metrics_store.latest_component_runs(connection, dag_id, run_id)
            succeeded = all(latest[c]["status"] == "success" for c in validated.order)
            totals = metrics_store.job_totals(latest)
            row = _job_row(validated, context, run_context, "success" if succeeded else "failed", totals)
            metrics_store.upsert_job_run(connection, row)
        if succeeded:
            from etlkit.jobs.staging import remove_tree, staging_path

            remove_tree(staging_path(run_context["run_dir"], run_context.get("staging_conn_id")))
        log.info("DECLARATIVE_JOB_METRICS %s", json.dumps(row, default=str, sort_keys=True))
        return {k: v for k, v in row.items() if k not in ("started_at", "finished_at")}


class StagingHousekeepingOperator(BaseOperator):
    """Removes staged run outputs older than ``staging.retention_days`` (default 7) of the Variable."""

    def execute(self, context) -> dict[str, Any]:
        from etlkit.jobs.staging import remove_stale_staged_runs, staging_path

        staging = check_settings(_read_settings()).get("staging") or {}
        root = staging.get("root") or str(default_root("staging"))
        retention_days = float(staging.get("retention_days", 7))
        removed = remove_stale_staged_runs(
            staging_path(root, staging.get("conn_id")), retention_days, now=datetime.now(UTC).timestamp()
        )
        log.info("removed %d staged runs older than %s days under %s", len(removed), retention_days, root)
        return {"staging_root": root, "removed_runs": len(removed)}


def _record_unprepared_run(validated: ValidatedJob, context, settings: dict, requested: str | None) -> None:
    """A failed job row and ``upstream_failed`` component rows for a run whose context never resolved."""
    run_context = {
        "environment": requested or settings.get("default_environment"),
        "connections": {},
        "job_file_sha256": validated.sha256,
        "started_at": datetime.now(UTC).isoformat(),
    }
    dag_id, run_id = context["dag"].dag_id, context["run_id"]
    try:
        with _postgres(settings.get("metrics_conn_id", DEFAULT_METRICS_CONN_ID)) as connection:
            metrics_store.ensure_tables(connection)
            for component_id in validated.order:
                never_ran = ComponentMetrics(
                    component_id, validated.components[component_id].type, try_number=0
                )
                never_ran.finish("upstream_failed")
                metrics_store.upsert_component_run(
                    connection, dag_id, run_id, run_context["environment"], never_ran.summary()
                )
            metrics_store.upsert_job_run(connection, _job_row(validated, context, run_context, "failed", {}))
    except Exception as error:
        log.warning("could not record the failed run in the metrics tables: %s", error)
