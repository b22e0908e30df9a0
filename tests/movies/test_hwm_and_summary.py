"""Units: the high-water mark capped at the snapshot time, the future-dated report, picking a free index
name, and the run summary built from the tasks' small results."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import elasticsearch
import pytest

from etlkit.movies import sync
from etlkit.movies.bulk import BulkResult, ItemFailure
from etlkit.movies.change_keys import ChangeKeys, Snapshot
from etlkit.movies.overlap import drop_unchanged_overlap
from etlkit.movies.results import Committed, Plan, Synced
from etlkit.movies.state import InMemoryStateStore, MoviesState
from etlkit.movies.summary import PROGRESS, load_progress, run_summary
from etlkit.movies.target import NAME_CANDIDATES, IndexNameTaken, create_new_physical_index
from etlkit.movies.transform import FilmRow

pytestmark = pytest.mark.movies

SNAP = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
LATER = SNAP + timedelta(days=30)


def test_a_future_change_key_is_capped_at_the_snapshot_and_reported_by_id():
    keys = ChangeKeys(Snapshot(SNAP))
    keys.see("a", SNAP - timedelta(minutes=1))
    keys.see("b", LATER)
    keys.see("c", None)
    keys.see("d", SNAP)  # the snapshot instant itself is not the future

    assert keys.rows_read == 4 and keys.max_key == LATER
    assert keys.mark() == SNAP
    assert keys.future_count == 1 and keys.future_ids == ["b"]
    assert "1 film work(s)" in keys.future_report() and "first ids: b" in keys.future_report()
    assert ChangeKeys(Snapshot(SNAP)).future_report() is None


def test_the_stored_mark_never_passes_the_snapshot_and_a_poisoned_one_heals():
    state = MoviesState(hwm="2025-06-01T11:00:00.000000+00:00")
    assert state.after_incremental(LATER, SNAP).hwm == "2025-06-01T12:00:00.000000+00:00"
    assert state.after_incremental(SNAP - timedelta(hours=2), SNAP) == state  # never backwards
    assert state.after_incremental(None, SNAP) == state
    poisoned = MoviesState(hwm=LATER.isoformat())
    assert poisoned.after_incremental(None, SNAP).hwm == "2025-06-01T12:00:00.000000+00:00"
    full = MoviesState().after_full(LATER, "movies_1", SNAP, SNAP)
    assert full.hwm == "2025-06-01T12:00:00.000000+00:00"


def test_future_dated_rows_are_compared_with_the_index_instead_of_rewritten_each_run():
    snapshot = Snapshot(SNAP)
    rows = [
        (FilmRow("1", "t", None, None, SNAP - timedelta(seconds=1)), {"id": "1", "v": 1}),
        (FilmRow("2", "t", None, None, LATER), {"id": "2", "v": 1}),
        (FilmRow("3", "t", None, None, LATER), {"id": "3", "v": "changed"}),
    ]
    indexed = {"2": {"id": "2", "v": 1}, "3": {"id": "3", "v": 0}}
    asked: list[list[str]] = []

    def fetch(ids):
        asked.append(ids)
        return {i: indexed[i] for i in ids if i in indexed}

    counts: dict[str, int] = {}
    boundary = SNAP - timedelta(hours=1)
    kept = [d["id"] for _, d in drop_unchanged_overlap(rows, boundary, fetch, 10, counts, snapshot)]
    assert kept == ["1", "3"] and counts == {"unchanged": 1}
    assert asked == [["2", "3"]]  # the ordinary row past the HWM is not looked up


class _Indices:
    def __init__(self, taken: set[str]):
        self.taken = taken
        self.created: list[str] = []

    def create(self, index, settings, mappings):
        if index in self.taken:
            meta = type("Meta", (), {"status": 400})()
            raise elasticsearch.BadRequestError("resource_already_exists_exception", meta, {})
        self.created.append(index)


class _Client:
    def __init__(self, taken: set[str]):
        self.indices = _Indices(taken)


def test_a_taken_index_name_moves_to_the_next_second_and_gives_up_retryably():
    client = _Client({"movies_20250601120000"})
    assert create_new_physical_index(client, "movies", SNAP) == "movies_20250601120001"
    assert client.indices.created == ["movies_20250601120001"]

    taken = {f"movies_2025060112000{n}" for n in range(NAME_CANDIDATES)}
    with pytest.raises(IndexNameTaken, match="retry picks names from its own, later clock"):
        create_new_physical_index(_Client(taken), "movies", SNAP)


def test_other_create_errors_are_not_taken_for_a_name_collision():
    class Refusing(_Indices):
        def create(self, index, settings, mappings):
            meta = type("Meta", (), {"status": 400})()
            raise elasticsearch.BadRequestError("invalid_index_name_exception", meta, {})

    client = _Client(set())
    client.indices = Refusing(set())
    with pytest.raises(elasticsearch.BadRequestError, match="invalid_index_name_exception"):
        create_new_physical_index(client, "movies", SNAP)


PLAN = {"mode": "incremental", "reason": "changes since h0", "write_index": "movies", "hwm_before": "h0"}


def test_run_summary_of_a_successful_run():
    summary = run_summary(
        plan=PLAN,
        synced={"rows_read": 5, "rows_loaded": 3, "rows_rejected": 0, "extra": {"future_dated": 1}},
        committed={"hwm_after": "h1"},
        reconciled={"rows_read": 1, "rows_loaded": 1, "deleted": 2},
    ).as_xcom()
    assert (summary["rows_read"], summary["rows_loaded"], summary["rows_rejected"]) == (6, 4, 0)
    assert summary["extra"] == {
        "outcome": "success",
        "failed_task": None,
        "mode": "incremental",
        "reason": "changes since h0",
        "index": "movies",
        "deleted": 2,
        "reconciled": True,
        "hwm_before": "h0",
        "hwm_after": "h1",
        "future_dated": 1,
    }


def test_run_summary_of_a_run_failed_in_sync_keeps_the_hwm_and_counts_the_rejected():
    result = BulkResult(succeeded=1, failures=[ItemFailure("x", 400, "document_parsing_exception", "bad")])
    summary = run_summary(
        plan=PLAN, synced=load_progress(3, result), committed=None, reconciled=None, failed_task="sync"
    ).as_xcom()
    assert (summary["rows_read"], summary["rows_loaded"], summary["rows_rejected"]) == (3, 1, 1)
    assert summary["extra"]["hwm_after"] == "h0" and summary["extra"]["deleted"] == 0
    assert summary["extra"]["outcome"] == "failed" and summary["extra"]["failed_task"] == "sync"
    nothing = run_summary(plan=None, synced=None, committed=None, reconciled=None, failed_task="plan")
    assert nothing.as_xcom()["extra"]["mode"] is None and nothing.rows_read == 0


FULL_PLAN = Plan(
    mode="full",
    reason="full_refresh param",
    write_index="movies_20250601120000",
    target_kind="alias",
    previous_index="movies_20250501120000",
    lower_bound=None,
    change_columns={"film_work": "modified", "genre_film_work": "created"},
    hwm_before="2025-06-01T11:00:00.000000+00:00",
)
SYNCED = Synced(
    rows_read=5,
    rows_loaded=4,
    mode="full",
    reason="full_refresh param",
    index="movies_20250601120000",
    max_key=LATER.isoformat(timespec="microseconds"),
    snapshot_at=SNAP.isoformat(timespec="microseconds"),
    future_dated=1,
    ignored_roles=0,
    unchanged_skipped=0,
    hwm_before="2025-06-01T11:00:00.000000+00:00",
)


def test_the_xcom_values_keep_their_content_and_read_back():
    assert Plan.from_xcom(json.loads(json.dumps(FULL_PLAN.to_xcom()))) == FULL_PLAN
    assert FULL_PLAN.to_xcom()["write_index"] == "movies_20250601120000" and FULL_PLAN.full
    xcom = json.loads(json.dumps(SYNCED.to_xcom()))
    assert {k: xcom[k] for k in ("pipeline", "rows_read", "rows_loaded", "rows_rejected")} == {
        "pipeline": "movies",
        "rows_read": 5,
        "rows_loaded": 4,
        "rows_rejected": 0,
    }
    assert set(xcom["extra"]) == {
        "mode", "reason", "index", "max_key", "snapshot_at", "future_dated", "ignored_roles",
        "unchanged_skipped", "hwm_before",
    }  # fmt: skip
    assert Synced.from_xcom(xcom) == SYNCED
    committed = Committed("incremental", "h0", "h1", "movies_1")
    assert Committed.from_xcom(committed.to_xcom()) == committed
    assert committed.to_xcom() == {
        "mode": "incremental",
        "hwm_before": "h0",
        "hwm_after": "h1",
        "index": "movies_1",
    }


def test_commit_moves_the_hwm_to_the_snapshot_capped_key_and_records_the_new_index():
    store = InMemoryStateStore(MoviesState(hwm="2025-06-01T11:00:00.000000+00:00", index="movies_old"))
    committed = sync.commit(store, FULL_PLAN, SYNCED, SNAP)
    assert committed == Committed(
        mode="full",
        hwm_before="2025-06-01T11:00:00.000000+00:00",
        hwm_after="2025-06-01T12:00:00.000000+00:00",  # LATER capped at the snapshot
        index="movies_20250601120000",
    )
    assert store.load().hwm == committed.hwm_after and store.load().last_reconciled_at is not None


def test_reconcile_connects_only_when_due_and_records_when_it_ran(monkeypatch):
    from contextlib import contextmanager

    from etlkit.movies.settings import MoviesSettings

    opened: list[str] = []

    @contextmanager
    def connect():
        opened.append("connections")
        yield "ids", "payload", "es"

    monkeypatch.setattr(sync, "reconcile", lambda *a: {"rows_read": 1, "rows_loaded": 1, "deleted": 2})
    settings = MoviesSettings()  # every 60 minutes
    recent = MoviesState(hwm="h", last_reconciled_at=(SNAP - timedelta(minutes=5)).isoformat())
    store = InMemoryStateStore(recent)
    assert sync.reconcile_if_due(connect, settings, FULL_PLAN, store, SNAP) is None
    assert opened == [] and store.load() == recent

    forced = MoviesSettings(reconcile=True)
    assert sync.reconcile_if_due(connect, forced, FULL_PLAN, store, SNAP)["deleted"] == 2
    assert opened == ["connections"]
    assert store.load().last_reconciled_at == SNAP.isoformat(timespec="microseconds")
    assert store.load().hwm == "h"


class _TaskInstance:
    run_id = "manual__1"

    def __init__(self, task_id: str):
        self.task_id = task_id
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value

    def xcom_pull(self, *args, **kwargs):  # the summary reads the task's arguments, never pulls by task id
        raise AssertionError("xcom_pull called")


def test_a_failed_runs_summary_comes_from_the_failing_tasks_inputs_and_its_progress():
    from etlkit.operators.movies import (
        MoviesPublishOperator,
        MoviesReconcileOperator,
        emit_summary_of_failed_run,
    )

    committed = {"mode": "full", "hwm_before": "h0", "hwm_after": "h1", "index": "movies_20250601120000"}
    task = MoviesReconcileOperator(
        task_id="reconcile", plan=FULL_PLAN.to_xcom(), synced=SYNCED.to_xcom(), committed=committed
    )
    failure = RuntimeError("bulk failed")
    setattr(failure, PROGRESS, {"rows_read": 2, "rows_loaded": 1, "rows_rejected": 0, "deleted": 0})
    ti = _TaskInstance("reconcile")
    emit_summary_of_failed_run({"task": task, "ti": ti, "exception": failure})
    summary = ti.pushed["run_summary"]
    assert (summary["rows_read"], summary["rows_loaded"]) == (5 + 2, 4 + 1)
    extra = summary["extra"]
    assert (extra["failed_task"], extra["outcome"], extra["reconciled"]) == ("reconcile", "failed", True)
    assert (extra["hwm_before"], extra["hwm_after"], extra["future_dated"]) == (FULL_PLAN.hwm_before, "h1", 1)

    # publish failed: no progress of its own, commit_state never ran, so the HWM stays
    publish = MoviesPublishOperator(task_id="publish", plan=FULL_PLAN.to_xcom(), synced=SYNCED.to_xcom())
    ti = _TaskInstance("publish")
    emit_summary_of_failed_run({"task": publish, "ti": ti, "exception": RuntimeError("swap failed")})
    extra = ti.pushed["run_summary"]["extra"]
    assert ti.pushed["run_summary"]["rows_loaded"] == 4
    assert (extra["failed_task"], extra["hwm_after"], extra["reconciled"]) == (
        "publish",
        FULL_PLAN.hwm_before,
        False,
    )
