"""Operators of the movies PostgreSQL → Elasticsearch DAG: plan → sync → publish → commit_state → reconcile.

Each builds the settings and its connections, calls one step of ``etlkit.movies.sync`` and returns that
step's small result; downstream tasks receive it as an argument wired from ``<task>.output``. Each attempt
opens a fresh PostgreSQL connection and a fresh Elasticsearch client and closes both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, closing, contextmanager
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator

from etlkit.common.assets import MOVIES_INDEX, record_asset_event
from etlkit.common.lineage import LineageReporting, movies_lineage
from etlkit.hooks.elasticsearch import ElasticsearchClientHook, refusals_fail_fast
from etlkit.movies import sync
from etlkit.movies.results import Plan, Synced
from etlkit.movies.settings import MoviesSettings, check_run_params
from etlkit.movies.state import VariableStateStore
from etlkit.movies.summary import PROGRESS, RUN_SUMMARY_KEY, run_summary

PG_CONN_ID = "movies_postgres"
ES_CONN_ID = ElasticsearchClientHook.default_conn_name


class MoviesBaseOperator(BaseOperator):
    """:param pg_conn_id: PostgreSQL connection (templated).
    :param es_conn_id: Elasticsearch connection (templated).
    :param settings_defaults: ``MoviesSettings`` values over the model's defaults (env and Params win).
    :param plan, synced, committed: the results of plan, sync, commit_state (``<task>.output``)."""

    template_fields = ("pg_conn_id", "es_conn_id", "plan", "synced", "committed")
    # The summary input a failed try of this task reports from its exception (see summary.PROGRESS).
    progress_of: str | None = None

    def __init__(
        self,
        *,
        pg_conn_id: str = PG_CONN_ID,
        es_conn_id: str = ES_CONN_ID,
        settings_defaults: Mapping[str, Any] | None = None,
        plan: Any = None,
        synced: Any = None,
        committed: Any = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.pg_conn_id = pg_conn_id
        self.es_conn_id = es_conn_id
        self.settings_defaults = dict(settings_defaults or {})
        self.plan, self.synced, self.committed = plan, synced, committed
        # Appended to the DAG's alert callback: runs once, when a try fails for good (not on a retry).
        self.on_failure_callback = [*_as_list(self.on_failure_callback), emit_summary_of_failed_run]

    def settings(self, context) -> MoviesSettings:
        check_run_params(context.get("params") or {})
        return MoviesSettings.resolve(context, defaults=self.settings_defaults)

    # The PostgreSQL hook is imported here: its provider would slow down DAG parsing.
    def open_pg(self, stack: ExitStack):
        from etlkit.hooks.postgres import EtlPostgresHook

        hook = EtlPostgresHook(self.pg_conn_id, application_name="movies_etl")
        return stack.enter_context(closing(hook.get_conn()))

    def open_es(self, stack: ExitStack):
        # Entered before the client, so it also sees the errors of the client's version probe.
        stack.enter_context(refusals_fail_fast(self.es_conn_id))
        return stack.enter_context(ElasticsearchClientHook(es_conn_id=self.es_conn_id).get_client())


def _as_list(callbacks: Any) -> list:
    if callbacks is None:
        return []
    return list(callbacks) if isinstance(callbacks, list | tuple) else [callbacks]


def emit_run_summary(context, **summary_inputs: Any) -> dict[str, Any]:
    """The run's one ``ETL_METRICS`` line and its one XCom (key ``run_summary``)."""
    ti = context["ti"]
    summary = run_summary(**summary_inputs).log(run_id=ti.run_id, task=ti.task_id)
    ti.xcom_push(key=RUN_SUMMARY_KEY, value=summary)
    return summary


def emit_summary_of_failed_run(context) -> None:
    """Failure callback: the summary of the run this task's final failure ends, from the upstream results
    the task received and the progress its failed try reached."""
    task = context["task"]
    inputs = {name: _xcom(getattr(task, name, None)) for name in ("plan", "synced", "committed")}
    inputs["reconciled"] = None
    if task.progress_of:
        inputs[task.progress_of] = getattr(context.get("exception"), PROGRESS, None)
    emit_run_summary(context, **inputs, failed_task=context["ti"].task_id)


def _xcom(value: Any) -> Mapping[str, Any] | None:
    """A rendered upstream result; anything else (not rendered: the task failed before) is None."""
    return value if isinstance(value, Mapping) else None


class MoviesPlanOperator(MoviesBaseOperator):
    """Resolve change columns and the target, decide the mode; in full mode create the new physical index."""

    def execute(self, context) -> dict[str, Any]:
        settings = self.settings(context)
        with ExitStack() as stack:
            pg, es = self.open_pg(stack), self.open_es(stack)
            planned = sync.plan(pg, es, settings, VariableStateStore().load(), datetime.now(UTC))
        return planned.to_xcom()


class MoviesSyncOperator(LineageReporting, MoviesBaseOperator):
    """Stream candidate film works from PostgreSQL through the transform into ``_bulk``."""

    progress_of = "synced"

    def execute(self, context) -> dict[str, Any]:
        settings, planned = self.settings(context), Plan.from_xcom(self.plan)
        with ExitStack() as stack:
            pg, es = self.open_pg(stack), self.open_es(stack)
            synced = sync.sync_films(pg, es, settings, planned, retried=context["ti"].try_number > 1)
        self.note_lineage(
            movies_lineage(
                self.pg_conn_id, self.es_conn_id, settings.pg_schema, settings.index_alias, synced.rows_loaded
            )
        )
        return synced.to_xcom()


class MoviesPublishOperator(MoviesBaseOperator):
    """Full mode: check the new index, move the alias in one request, sweep old indices. Else a no-op."""

    def execute(self, context) -> dict[str, Any]:
        planned = Plan.from_xcom(self.plan)
        if not planned.full:
            return sync.NOT_PUBLISHED
        settings, loaded = self.settings(context), Synced.from_xcom(self.synced).rows_loaded
        with ExitStack() as stack:
            return sync.publish(self.open_es(stack), settings, planned, loaded)


class MoviesCommitStateOperator(MoviesBaseOperator):
    """Advance the HWM to the largest change key loaded, only now that the load (and swap) succeeded."""

    def execute(self, context) -> dict[str, Any]:
        synced = Synced.from_xcom(self.synced)
        committed = sync.commit(VariableStateStore(), Plan.from_xcom(self.plan), synced, datetime.now(UTC))
        counts = {"mode": committed.mode, "rows_read": synced.rows_read, "rows_loaded": synced.rows_loaded}
        record_asset_event(
            context, MOVIES_INDEX, {**counts, "index": committed.index, "hwm": committed.hwm_after}
        )
        return committed.to_xcom()


class MoviesReconcileOperator(MoviesBaseOperator):
    """Delete documents of film works gone from PostgreSQL; index film works missing from the index.
    The last task: it emits the run summary."""

    progress_of = "reconciled"

    def execute(self, context) -> dict[str, Any] | str:
        settings, planned = self.settings(context), Plan.from_xcom(self.plan)

        @contextmanager
        def connect() -> Iterator[tuple[Any, Any, Any]]:
            with ExitStack() as stack:
                yield self.open_pg(stack), self.open_pg(stack), self.open_es(stack)

        counts = sync.reconcile_if_due(connect, settings, planned, VariableStateStore(), datetime.now(UTC))
        emit_run_summary(
            context, plan=self.plan, synced=self.synced, committed=self.committed, reconciled=counts
        )
        return "skipped: not due" if counts is None else counts
