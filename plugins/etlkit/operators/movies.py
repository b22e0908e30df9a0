"""Operators of the movies PostgreSQL → Elasticsearch DAG: plan → sync → publish → commit_state → reconcile.

Each attempt opens a fresh PostgreSQL connection and a fresh Elasticsearch client and closes both; nothing is
cached between attempts or tasks. XCom carries only small values (mode, index names, counts, keys).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, closing
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator, Variable

from etlkit.common.alerting import alert_context
from etlkit.common.assets import MOVIES_INDEX, record_asset_event
from etlkit.common.errors import TransientError
from etlkit.common.lineage import LineageReporting, movies_lineage
from etlkit.common.metrics import RunMetrics
from etlkit.movies import queries
from etlkit.movies.bulk import Action, BulkLoader, BulkResult, delete_action, index_action
from etlkit.movies.change_keys import ChangeKeys, Snapshot
from etlkit.movies.extract import read_columns, stream_film_ids, stream_film_rows
from etlkit.movies.overlap import Pair, drop_unchanged_overlap
from etlkit.movies.reconcile import diff_sorted_ids
from etlkit.movies.settings import MoviesSettings
from etlkit.movies.state import (
    TARGET_LEGACY,
    TARGET_MISSING,
    MoviesState,
    decide_mode,
    from_iso,
    is_due,
    lower_bound,
    to_iso,
)
from etlkit.movies.summary import PROGRESS, RUN_SUMMARY_KEY, load_progress, run_summary
from etlkit.movies.target import (
    create_new_physical_index,
    recreate_physical_index,
    resolve_target,
    stream_index_ids,
    swap_alias,
    sweep_old_indices,
)
from etlkit.movies.transform import TransformStats, build_document, document_json

log = logging.getLogger(__name__)

PIPELINE = "movies"
STATE_VARIABLE = "movies_etl_state"


class VariableStateStore:
    """The run state as one JSON Variable (``movies_etl_state``)."""

    def __init__(self, key: str = STATE_VARIABLE):
        self.key = key

    def load(self) -> MoviesState:
        return MoviesState.from_json(Variable.get(self.key, default=None))

    def save(self, state: MoviesState) -> None:
        Variable.set(self.key, state.to_json())
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

    @staticmethod
    def loader(client: Any, index: str, settings: MoviesSettings) -> BulkLoader:
        return BulkLoader(
            client,
            index=index,
            max_chunk_docs=settings.bulk_chunk_docs,
            max_chunk_bytes=settings.bulk_chunk_bytes,
            max_reported_errors=settings.max_reported_errors,
        )


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


def film_documents(rows, stats: TransformStats, keys: ChangeKeys) -> Iterator[Pair]:
    """(row, document) pairs, keeping the row count, the running max change key and the future-dated
    films in ``keys``."""
    for row in rows:
        keys.see(row.id, row.change_key)
        yield row, build_document(row, stats)


def index_actions(pairs: Iterable[Pair]) -> Iterator[Action]:
    for _, document in pairs:
        yield index_action(document["id"], document_json(document))


def indexed_sources(client: Any, index: str) -> Callable[[list[str]], dict[str, dict[str, Any]]]:
    """``{id: _source}`` of the given ids that are indexed (realtime ``_mget``)."""

    def fetch(ids: list[str]) -> dict[str, dict[str, Any]]:
        docs = client.mget(index=index, ids=ids)["docs"]
        return {doc["_id"]: doc["_source"] for doc in docs if doc.get("found")}

    return fetch


class MoviesPlanOperator(MoviesBaseOperator):
    """Resolve change columns and the target, decide the mode; in full mode create the new physical index."""

    def execute(self, context) -> dict[str, Any]:
        settings = self.settings(context)
        state = self.state_store().load()
        now = datetime.now(UTC)
        with ExitStack() as stack, alert_context(hwm=state.hwm):
            pg = self.open_pg(stack)
            columns = read_columns(
                pg, queries.columns_query(), settings.pg_schema, list(queries.SOURCE_TABLES)
            )
            change_columns = queries.resolve_change_columns(
                columns, settings.modified_column, settings.created_column
            )
            es = self.open_es(stack)
            target = resolve_target(es, settings.index_alias)
            mode, reason = decide_mode(
                full_refresh_param=settings.full_refresh,
                state=state,
                target_kind=target.kind,
                mappings_ok=target.mappings_ok,
                full_refresh_interval=timedelta(hours=settings.full_refresh_interval_hours),
                now=now,
            )
            if mode == "full":
                write_index = create_new_physical_index(es, settings.index_alias, now)
            else:
                write_index = target.index if target.kind == TARGET_LEGACY else settings.index_alias
        if target.kind == TARGET_MISSING and state.hwm:
            log.warning(
                "index %s is missing although a HWM is stored: rebuilding in full", settings.index_alias
            )
        bound = None if mode == "full" else lower_bound(state.hwm, settings.overlap_seconds)
        plan = {
            "mode": mode,
            "reason": reason,
            "write_index": write_index,
            "target_kind": target.kind,
            "previous_index": target.index,
            "lower_bound": to_iso(bound),
            "change_columns": change_columns,
            "hwm_before": state.hwm,
        }
        log.info("plan: %s", plan)
        return plan


class MoviesSyncOperator(LineageReporting, MoviesBaseOperator):
    """Stream candidate film works from PostgreSQL through the transform into ``_bulk``."""

    def execute(self, context) -> dict[str, Any]:
        settings = self.settings(context)
        plan = self.plan_of(context)
        stats = TransformStats()
        snapshot = Snapshot()
        keys = ChangeKeys(snapshot)
        counts: dict[str, int] = {"unchanged": 0}
        result = BulkResult()
        if plan["mode"] == "full":
            query = queries.payload_query(settings.pg_schema, plan["change_columns"], "all")
            params: dict[str, Any] = {}
        else:
            query = queries.payload_query(settings.pg_schema, plan["change_columns"], "incremental")
            params = {"lower": from_iso(plan["lower_bound"])}
        try:
            self._load(context, settings, plan, query, params, stats, keys, counts, result)
        except BaseException as exc:
            # The run summary of a failed run (emitted by the failure callback) reports what got through.
            setattr(exc, PROGRESS, load_progress(keys.rows_read, result))
            raise
        self.note_lineage(
            movies_lineage(
                self.pg_conn_id, self.es_conn_id, settings.pg_schema, settings.index_alias, result.succeeded
            )
        )
        if stats.ignored_roles:
            log.warning("%d person link(s) with an unknown or NULL role ignored", stats.ignored_roles)
        if report := keys.future_report():
            log.warning("%s", report)
        return RunMetrics(
            PIPELINE,
            rows_read=keys.rows_read,
            rows_loaded=result.succeeded,
            extra={
                "mode": plan["mode"],
                "reason": plan["reason"],
                "index": plan["write_index"],
                "max_key": to_iso(keys.mark()),
                "snapshot_at": to_iso(snapshot.taken_at),
                "future_dated": keys.future_count,
                "ignored_roles": stats.ignored_roles,
                "unchanged_skipped": counts["unchanged"],
                "hwm_before": plan["hwm_before"],
            },
        ).as_xcom()

    def _load(self, context, settings, plan, query, params, stats, keys, counts, result) -> None:
        with (
            ExitStack() as stack,
            alert_context(mode=plan["mode"], index=plan["write_index"], hwm=plan["hwm_before"]),
        ):
            pg = self.open_pg(stack)
            es = self.open_es(stack)
            if plan["mode"] == "full" and context["ti"].try_number > 1:
                # An earlier try's documents include films deleted since: start the new index afresh.
                recreate_physical_index(es, plan["write_index"])
            rows = stream_film_rows(pg, query, params, settings.batch_size, snapshot=keys.snapshot)
            pairs = film_documents(rows, stats, keys)
            if plan["mode"] != "full":
                fetch = indexed_sources(es, plan["write_index"])
                boundary = from_iso(plan["hwm_before"])
                pairs = drop_unchanged_overlap(
                    pairs, boundary, fetch, settings.bulk_chunk_docs, counts, keys.snapshot
                )
            self.loader(es, plan["write_index"], settings).load(index_actions(pairs), result)


class MoviesPublishOperator(MoviesBaseOperator):
    """Full mode: check the new index, move the alias in one request, sweep old indices. Else a no-op."""

    def execute(self, context) -> dict[str, Any]:
        settings = self.settings(context)
        plan = self.plan_of(context)
        if plan["mode"] != "full":
            return {"published": False, "reason": "incremental run: writes went through the alias"}
        loaded = context["ti"].xcom_pull(task_ids="sync")["rows_loaded"]
        new_index = plan["write_index"]
        with ExitStack() as stack, alert_context(mode="full", index=new_index):
            es = self.open_es(stack)
            es.indices.refresh(index=new_index)
            count = es.count(index=new_index)["count"]
            if count != loaded:
                raise TransientError(f"{new_index} holds {count} documents, {loaded} were acknowledged")
            swap = swap_alias(es, settings.index_alias, new_index)
            keep = {new_index}
            previous = swap["previous"] or (
                plan["previous_index"] if plan["target_kind"] == "alias" else None
            )
            if settings.keep_previous_index and previous:
                keep.add(previous)
            deleted = sweep_old_indices(es, settings.index_alias, keep)
        return {"published": True, "index": new_index, "count": count, **swap, "deleted": deleted}


class MoviesCommitStateOperator(MoviesBaseOperator):
    """Advance the HWM to the largest change key loaded, only now that the load (and swap) succeeded."""

    def execute(self, context) -> dict[str, Any]:
        plan = self.plan_of(context)
        synced = context["ti"].xcom_pull(task_ids="sync")
        store = self.state_store()
        before = store.load()
        max_key = from_iso(synced["extra"]["max_key"])
        ceiling = from_iso(synced["extra"]["snapshot_at"])
        if plan["mode"] == "full":
            after = before.after_full(max_key, plan["write_index"], datetime.now(UTC), ceiling)
        else:
            after = before.after_incremental(max_key, ceiling)
        store.save(after)
        extra = {"mode": plan["mode"], "rows_read": synced["rows_read"], "rows_loaded": synced["rows_loaded"]}
        record_asset_event(context, MOVIES_INDEX, {**extra, "index": after.index, "hwm": after.hwm})
        return {"mode": plan["mode"], "hwm_before": before.hwm, "hwm_after": after.hwm, "index": after.index}


class MoviesReconcileOperator(MoviesBaseOperator):
    """Delete documents of film works gone from PostgreSQL; index film works missing from the index.
    The last task: it emits the run summary."""

    def execute(self, context) -> dict[str, Any] | str:
        settings = self.settings(context)
        ti = context["ti"]
        store = self.state_store()
        now = datetime.now(UTC)
        due = settings.reconcile or is_due(
            store.load().last_reconciled_at, timedelta(minutes=settings.reconcile_interval_minutes), now
        )
        counts = self._reconcile(context, settings, store, now) if due else None
        emit_run_summary(
            context,
            plan=self.plan_of(context),
            synced=ti.xcom_pull(task_ids="sync"),
            committed=ti.xcom_pull(task_ids="commit_state"),
            reconciled=counts,
        )
        return counts if due else "skipped: not due"

    def _reconcile(self, context, settings: MoviesSettings, store, now: datetime) -> dict[str, int]:
        plan = self.plan_of(context)
        counts = {"deleted": 0, "indexed": 0}
        stats = TransformStats()
        result = BulkResult()
        try:
            with ExitStack() as stack, alert_context(mode="reconcile", index=settings.index_alias):
                id_conn, payload_conn = self.open_pg(stack), self.open_pg(stack)
                es = self.open_es(stack)
                es.indices.refresh(index=settings.index_alias)
                differences = diff_sorted_ids(
                    stream_film_ids(id_conn, queries.film_ids_query(settings.pg_schema), settings.batch_size),
                    stream_index_ids(es, settings.index_alias, settings.batch_size),
                )
                actions = self._actions(
                    differences, payload_conn, plan["change_columns"], settings, counts, stats
                )
                self.loader(es, settings.index_alias, settings).load(actions, result)
        except BaseException as exc:
            # Which of the succeeded bulk items were deletes is not tracked: a failed reconcile reports
            # them all as loaded, and nothing as deleted.
            setattr(exc, PROGRESS, load_progress(counts["indexed"], result))
            raise
        store.save(store.load().after_reconcile(now))
        log.info("reconciled: %d deleted, %d re-indexed", counts["deleted"], counts["indexed"])
        return {
            "rows_read": counts["indexed"],
            "rows_loaded": counts["indexed"],
            "deleted": counts["deleted"],
        }

    @staticmethod
    def _actions(differences, conn, change_columns, settings, counts, stats) -> Iterator[Action]:
        missing: list[str] = []

        def index_missing() -> Iterator[Action]:
            query = queries.payload_query(settings.pg_schema, change_columns, "ids")
            for row in stream_film_rows(conn, query, {"ids": missing}, settings.batch_size):
                counts["indexed"] += 1
                document = build_document(row, stats)
                yield index_action(document["id"], document_json(document))
            missing.clear()

        for kind, film_id in differences:
            if kind == "delete":
                counts["deleted"] += 1
                yield delete_action(film_id)
            else:
                missing.append(film_id)
                if len(missing) >= settings.batch_size:
                    yield from index_missing()
        if missing:
            yield from index_missing()
