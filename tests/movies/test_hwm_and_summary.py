"""Units: the high-water mark capped at the snapshot time, the future-dated report, picking a free index
name, and the run summary built from the tasks' small results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import elasticsearch
import pytest

from etlkit.movies.bulk import BulkResult, ItemFailure
from etlkit.movies.change_keys import ChangeKeys, Snapshot
from etlkit.movies.overlap import drop_unchanged_overlap
from etlkit.movies.state import MoviesState
from etlkit.movies.summary import load_progress, run_summary
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
