"""The movies run, step by step, without Airflow: plan → sync_films → publish → commit → reconcile_if_due.

Each step takes open connections (a psycopg connection, an Elasticsearch client), the settings and
the ``Plan``; the operators open and close those and hand the small typed results (``etlkit.movies.results``)
between tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from etlkit.common.alerting import alert_context
from etlkit.common.errors import TransientError
from etlkit.movies import queries
from etlkit.movies.bulk import Action, BulkLoader, BulkResult, delete_action, index_action
from etlkit.movies.change_keys import ChangeKeys, Snapshot
from etlkit.movies.extract import read_columns, stream_film_ids, stream_film_rows
from etlkit.movies.overlap import Pair, drop_unchanged_overlap
from etlkit.movies.reconcile import diff_sorted_ids
from etlkit.movies.results import Committed, Plan, Synced
from etlkit.movies.settings import MoviesSettings
from etlkit.movies.state import (
    TARGET_LEGACY,
    TARGET_MISSING,
    MoviesState,
    StateStore,
    decide_mode,
    from_iso,
    is_due,
    lower_bound,
    to_iso,
)
from etlkit.movies.summary import PROGRESS, load_progress
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


def plan(pg, es, settings: MoviesSettings, state: MoviesState, now: datetime) -> Plan:
    """Resolve change columns and the target, decide the mode; in full mode create the new physical index."""
    with alert_context(hwm=state.hwm):
        columns = read_columns(pg, queries.columns_query(), settings.pg_schema, list(queries.SOURCE_TABLES))
        change_columns = queries.resolve_change_columns(
            columns, settings.modified_column, settings.created_column
        )
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
        log.warning("index %s is missing although a HWM is stored: rebuilding in full", settings.index_alias)
    bound = None if mode == "full" else lower_bound(state.hwm, settings.overlap_seconds)
    planned = Plan(
        mode=mode,
        reason=reason,
        write_index=write_index,
        target_kind=target.kind,
        previous_index=target.index,
        lower_bound=to_iso(bound),
        change_columns=change_columns,
        hwm_before=state.hwm,
    )
    log.info("plan: %s", planned.to_xcom())
    return planned


@dataclass
class SyncOutcome:
    """What a sync read and loaded; kept up to date while it runs, so a failed sync reports it too."""

    stats: TransformStats = field(default_factory=TransformStats)
    keys: ChangeKeys = field(default_factory=lambda: ChangeKeys(Snapshot()))
    unchanged: dict[str, int] = field(default_factory=lambda: {"unchanged": 0})
    result: BulkResult = field(default_factory=BulkResult)

    def synced(self, planned: Plan) -> Synced:
        return Synced(
            rows_read=self.keys.rows_read,
            rows_loaded=self.result.succeeded,
            mode=planned.mode,
            reason=planned.reason,
            index=planned.write_index,
            max_key=to_iso(self.keys.mark()),
            snapshot_at=to_iso(self.keys.snapshot.taken_at),
            future_dated=self.keys.future_count,
            ignored_roles=self.stats.ignored_roles,
            unchanged_skipped=self.unchanged["unchanged"],
            hwm_before=planned.hwm_before,
        )


def sync_films(pg, es, settings: MoviesSettings, planned: Plan, *, retried: bool = False) -> Synced:
    """Stream the candidate film works through the transform into ``_bulk`` on the plan's index.

    ``retried``: an earlier try of this sync ran; in full mode its documents may include films
    deleted since, so the new index starts afresh. On failure the exception carries the progress
    (rows read, loaded) for the run summary."""
    outcome = SyncOutcome()
    mode = "all" if planned.full else "incremental"
    query = queries.payload_query(settings.pg_schema, planned.change_columns, mode)
    params = {} if mode == "all" else {"lower": from_iso(planned.lower_bound)}
    try:
        with alert_context(mode=planned.mode, index=planned.write_index, hwm=planned.hwm_before):
            if planned.full and retried:
                recreate_physical_index(es, planned.write_index)
            rows = stream_film_rows(pg, query, params, settings.batch_size, snapshot=outcome.keys.snapshot)
            pairs = film_documents(rows, outcome.stats, outcome.keys)
            if not planned.full:
                pairs = drop_unchanged_overlap(
                    pairs,
                    from_iso(planned.hwm_before),
                    indexed_sources(es, planned.write_index),
                    settings.bulk_chunk_docs,
                    outcome.unchanged,
                    outcome.keys.snapshot,
                )
            bulk_loader(es, planned.write_index, settings).load(index_actions(pairs), outcome.result)
    except BaseException as exc:
        setattr(exc, PROGRESS, load_progress(outcome.keys.rows_read, outcome.result))
        raise
    if outcome.stats.ignored_roles:
        log.warning("%d person link(s) with an unknown or NULL role ignored", outcome.stats.ignored_roles)
    if report := outcome.keys.future_report():
        log.warning("%s", report)
    return outcome.synced(planned)


NOT_PUBLISHED = {"published": False, "reason": "incremental run: writes went through the alias"}


def publish(es, settings: MoviesSettings, planned: Plan, loaded: int) -> dict[str, Any]:
    """Full mode: check the new index, move the alias in one request, sweep old indices."""
    new_index = planned.write_index
    with alert_context(mode="full", index=new_index):
        es.indices.refresh(index=new_index)
        count = es.count(index=new_index)["count"]
        if count != loaded:
            raise TransientError(f"{new_index} holds {count} documents, {loaded} were acknowledged")
        swap = swap_alias(es, settings.index_alias, new_index)
        keep = {new_index}
        previous = swap["previous"] or (planned.previous_index if planned.target_kind == "alias" else None)
        if settings.keep_previous_index and previous:
            keep.add(previous)
        deleted = sweep_old_indices(es, settings.index_alias, keep)
    return {"published": True, "index": new_index, "count": count, **swap, "deleted": deleted}


def next_state(before: MoviesState, planned: Plan, synced: Synced, now: datetime) -> MoviesState:
    """The state after a committed load: the HWM moves to the largest change key loaded (capped at the
    snapshot)."""
    max_key = from_iso(synced.max_key)
    ceiling = from_iso(synced.snapshot_at)
    if planned.full:
        return before.after_full(max_key, planned.write_index, now, ceiling)
    return before.after_incremental(max_key, ceiling)


def commit(store: StateStore, planned: Plan, synced: Synced, now: datetime) -> Committed:
    """Advance the stored state past this run's load; called only once the load (and swap) succeeded."""
    before = store.load()
    after = next_state(before, planned, synced, now)
    store.save(after)
    return Committed(mode=planned.mode, hwm_before=before.hwm, hwm_after=after.hwm, index=after.index)


def reconcile_if_due(
    connect: Callable[[], AbstractContextManager[tuple[Any, Any, Any]]],
    settings: MoviesSettings,
    planned: Plan,
    store: StateStore,
    now: datetime,
) -> dict[str, int] | None:
    """``reconcile`` when asked for or when ``reconcile_interval_minutes`` elapsed (None when not due);
    ``connect()`` opens (id connection, payload connection, Elasticsearch client) only then."""
    interval = timedelta(minutes=settings.reconcile_interval_minutes)
    if not (settings.reconcile or is_due(store.load().last_reconciled_at, interval, now)):
        return None
    with connect() as (id_conn, payload_conn, es):
        counts = reconcile(id_conn, payload_conn, es, settings, planned)
    store.save(store.load().after_reconcile(now))
    return counts


def reconcile(id_conn, payload_conn, es, settings: MoviesSettings, planned: Plan) -> dict[str, int]:
    """Delete documents of film works gone from PostgreSQL; index film works missing from the index."""
    counts = {"deleted": 0, "indexed": 0}
    result = BulkResult()
    try:
        with alert_context(mode="reconcile", index=settings.index_alias):
            es.indices.refresh(index=settings.index_alias)
            differences = diff_sorted_ids(
                stream_film_ids(id_conn, queries.film_ids_query(settings.pg_schema), settings.batch_size),
                stream_index_ids(es, settings.index_alias, settings.batch_size),
            )
            actions = _reconcile_actions(
                differences, payload_conn, planned.change_columns, settings, counts, TransformStats()
            )
            bulk_loader(es, settings.index_alias, settings).load(actions, result)
    except BaseException as exc:
        # Which of the succeeded bulk items were deletes is not tracked: a failed reconcile reports
        # them all as loaded, and nothing as deleted.
        setattr(exc, PROGRESS, load_progress(counts["indexed"], result))
        raise
    log.info("reconciled: %d deleted, %d re-indexed", counts["deleted"], counts["indexed"])
    return {"rows_read": counts["indexed"], "rows_loaded": counts["indexed"], "deleted": counts["deleted"]}


def _reconcile_actions(differences, conn, change_columns, settings, counts, stats) -> Iterator[Action]:
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


def bulk_loader(client: Any, index: str, settings: MoviesSettings) -> BulkLoader:
    return BulkLoader(
        client,
        index=index,
        max_chunk_docs=settings.bulk_chunk_docs,
        max_chunk_bytes=settings.bulk_chunk_bytes,
        max_reported_errors=settings.max_reported_errors,
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
