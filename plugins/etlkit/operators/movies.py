"""Operators of the movies PostgreSQL → Elasticsearch DAG: plan → sync → publish → commit_state → reconcile.

Each attempt opens a fresh PostgreSQL connection and a fresh Elasticsearch client and closes both; nothing is
cached between attempts or tasks. XCom carries only small values (mode, index names, counts, keys).
"""

from __future__ import annotations

import logging
from contextlib import ExitStack, closing
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator

from etlkit.common.assets import MOVIES_INDEX, record_asset_event
from etlkit.common.lineage import LineageReporting, movies_lineage
from etlkit.common.metrics import RunMetrics
from etlkit.common.state import VariableState
from etlkit.movies import sync
from etlkit.movies.settings import MoviesSettings
from etlkit.movies.state import (
    MoviesState,
    is_due,
)
from etlkit.movies.summary import PROGRESS, RUN_SUMMARY_KEY, run_summary

log = logging.getLogger(__name__)

PIPELINE = "movies"
STATE_VARIABLE = "movies_etl_state"


class VariableStateStore(VariableState):
    """The run state as one JSON Variable (``movies_etl_state``)."""

    def __init__(self, key: str = STATE_VARIABLE):
        super().__init__(key)

    def load(self) -> MoviesState:
        return MoviesState.from_json(self.read_text())

    def save(self, state: MoviesState) -> None:
        self.write_text(state.to_json())
        log.info("state %s saved: %s", self.key, state.to_json())


class MoviesBaseOperator(BaseOperator):
    template_fields = ("pg_conn_id", "es_conn_id")

    def __init__(
        self,
        *,
        pg_conn_id: str = "{{ params.pg_conn_id }}",
        es_conn_id: str = "{{ params.es_conn_id }}",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.pg_conn_id = pg_conn_id
        self.es_conn_id = es_conn_id
        # Appended to the DAG's alert callback: runs once, when a try fails for good (not on a retry).
        self.on_failure_callback = [*_as_list(self.on_failure_callback), emit_summary_of_failed_run]

    def settings(self, context) -> MoviesSettings:
        params = {**context["params"], "pg_conn_id": self.pg_conn_id, "es_conn_id": self.es_conn_id}
        return MoviesSettings.from_params(params)

    def state_store(self) -> VariableStateStore:
        return VariableStateStore()

    # Hooks are imported here, not at module level: their client libraries would slow down DAG parsing.
    def open_pg(self, stack: ExitStack):
        from etlkit.hooks.postgres import EtlPostgresHook

        hook = EtlPostgresHook(self.pg_conn_id, application_name="movies_etl")
        return stack.enter_context(closing(hook.get_conn()))

    def open_es(self, stack: ExitStack):
        from etlkit.hooks.elasticsearch import ElasticsearchClientHook, refusals_fail_fast

        # Entered before the client, so it also sees the errors of the client's version probe.
        stack.enter_context(refusals_fail_fast(self.es_conn_id))
        return stack.enter_context(ElasticsearchClientHook(es_conn_id=self.es_conn_id).get_client())

    @staticmethod
    def plan_of(context) -> dict[str, Any]:
        return context["ti"].xcom_pull(task_ids="plan")


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
    """Failure callback: the summary of the run this task's final failure ends."""
    ti = context["ti"]
    progress = getattr(context.get("exception"), PROGRESS, None)

    def result_of(task_id: str) -> dict[str, Any] | None:
        if task_id == ti.task_id:
            return progress
        return ti.xcom_pull(task_ids=task_id)

    reconciled = result_of("reconcile")
    emit_run_summary(
        context,
        plan=result_of("plan"),
        synced=result_of("sync"),
        committed=result_of("commit_state"),
        reconciled=reconciled if isinstance(reconciled, dict) else None,
        failed_task=ti.task_id,
    )


class MoviesPlanOperator(MoviesBaseOperator):
    """Resolve change columns and the target, decide the mode; in full mode create the new physical index."""

    def execute(self, context) -> dict[str, Any]:
        with ExitStack() as stack:
            return sync.plan(
                self.open_pg(stack),
                self.open_es(stack),
                self.settings(context),
                self.state_store().load(),
                datetime.now(UTC),
            )


class MoviesSyncOperator(LineageReporting, MoviesBaseOperator):
    """Stream candidate film works from PostgreSQL through the transform into ``_bulk``."""

    def execute(self, context) -> dict[str, Any]:
        settings = self.settings(context)
        planned = self.plan_of(context)
        with ExitStack() as stack:
            outcome = sync.sync_films(
                self.open_pg(stack),
                self.open_es(stack),
                settings,
                planned,
                retried=context["ti"].try_number > 1,
            )
        loaded = outcome.result.succeeded
        self.note_lineage(
            movies_lineage(self.pg_conn_id, self.es_conn_id, settings.pg_schema, settings.index_alias, loaded)
        )
        return RunMetrics(
            PIPELINE, rows_read=outcome.keys.rows_read, rows_loaded=loaded, extra=outcome.extra(planned)
        ).as_xcom()


class MoviesPublishOperator(MoviesBaseOperator):
    """Full mode: check the new index, move the alias in one request, sweep old indices. Else a no-op."""

    def execute(self, context) -> dict[str, Any]:
        planned = self.plan_of(context)
        if planned["mode"] != "full":
            return sync.NOT_PUBLISHED
        loaded = context["ti"].xcom_pull(task_ids="sync")["rows_loaded"]
        with ExitStack() as stack:
            return sync.publish(self.open_es(stack), self.settings(context), planned, loaded)


class MoviesCommitStateOperator(MoviesBaseOperator):
    """Advance the HWM to the largest change key loaded, only now that the load (and swap) succeeded."""

    def execute(self, context) -> dict[str, Any]:
        planned = self.plan_of(context)
        synced = context["ti"].xcom_pull(task_ids="sync")
        store = self.state_store()
        before = store.load()
        after = sync.next_state(before, planned, synced["extra"], datetime.now(UTC))
        store.save(after)
        extra = {
            "mode": planned["mode"],
            "rows_read": synced["rows_read"],
            "rows_loaded": synced["rows_loaded"],
        }
        record_asset_event(context, MOVIES_INDEX, {**extra, "index": after.index, "hwm": after.hwm})
        return {
            "mode": planned["mode"],
            "hwm_before": before.hwm,
            "hwm_after": after.hwm,
            "index": after.index,
        }


class MoviesReconcileOperator(MoviesBaseOperator):
    """Delete documents of film works gone from PostgreSQL; index film works missing from the index.
    The last task: it emits the run summary."""

    def execute(self, context) -> dict[str, Any] | str:
        settings = self.settings(context)
        planned = self.plan_of(context)
        ti = context["ti"]
        store = self.state_store()
        now = datetime.now(UTC)
        due = settings.reconcile or is_due(
            store.load().last_reconciled_at, timedelta(minutes=settings.reconcile_interval_minutes), now
        )
        counts = None
        if due:
            with ExitStack() as stack:
                id_conn, payload_conn = self.open_pg(stack), self.open_pg(stack)
                counts = sync.reconcile(id_conn, payload_conn, self.open_es(stack), settings, planned)
            store.save(store.load().after_reconcile(now))
        emit_run_summary(
            context,
            plan=planned,
            synced=ti.xcom_pull(task_ids="sync"),
            committed=ti.xcom_pull(task_ids="commit_state"),
            reconciled=counts,
        )
        return counts if due else "skipped: not due"
