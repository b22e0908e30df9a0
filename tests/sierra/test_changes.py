"""Changes mode: the window, the clamp (warn / fail), the overlap, deletions, a non-UTC DB TimeZone."""

from __future__ import annotations

import logging
from datetime import timedelta

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException
from psycopg import sql

from dev import pgdb
from dev.sierra_data import bib_id, delete_item, item_id, touch
from tests.sierra.conftest import data_ids, post_attempts, posted_files, sierra_sessions
from tests.sierra.fixtures import LINKS, build_catalogue

pytestmark = pytest.mark.sierra


def db_now(conn: psycopg.Connection):
    return conn.execute("SELECT now()").fetchone()[0]


@pytest.fixture
def clamp_case(sierra, backend):
    """Backend asks for changes since 3 h ago; records changed 2 h ago fall in the skipped span."""
    build_catalogue(sierra)
    now = db_now(sierra)
    requested = now - timedelta(hours=3)
    backend.set_state("SYNC_CHANGES", requested)
    for record in (item_id(1), item_id(2), bib_id(102)):
        touch(sierra, record, now - timedelta(hours=2))
    touch(sierra, item_id(3), now - timedelta(minutes=10))
    return requested


def test_clamped_window_warns_with_counts_and_posts_from_the_floor(run_task, backend, clamp_case, caplog):
    caplog.set_level(logging.WARNING)
    summary = run_task(max_sync_delta_minutes=60, clamp_policy="warn")

    assert summary["clamped"]["bib_records"] == 1 and summary["clamped"]["item_records"] == 2
    assert summary["clamped"]["oldest_skipped"] == (clamp_case + timedelta(hours=1)).isoformat()
    assert 7260 - 30 < summary["clamped"]["seconds"] < 7260 + 30  # (now - 60 min) - (requested - 60 s)
    assert data_ids(posted_files(backend)[0]) == [item_id(3)]
    metrics = dict(run_task.metrics)
    assert metrics["sierra_sync.changes_clamped_bib_records"] == 1
    assert metrics["sierra_sync.changes_clamped_item_records"] == 2
    assert metrics["sierra_sync.changes_clamped_seconds"] == summary["clamped"]["seconds"]
    warning = next(r.getMessage() for r in caplog.records if "clamped" in r.getMessage())
    assert "1 bib and 2 item records" in warning and clamp_case.isoformat() in warning


def test_clamp_is_counted_once_when_the_extraction_is_retried(run_task, backend, clamp_case, monkeypatch):
    from etlkit.sierra.extract import SierraSnapshot

    real_copy_rows, calls = SierraSnapshot.copy_rows, []

    def connection_lost_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return real_copy_rows(self, *args, **kwargs)

    monkeypatch.setattr(SierraSnapshot, "copy_rows", connection_lost_once)
    summary = run_task(max_sync_delta_minutes=60, clamp_policy="warn")

    assert len(calls) == 2, "the extraction was retried"
    clamped = [(name, value) for name, value in run_task.metrics if "changes_clamped" in name]
    assert clamped == [
        ("sierra_sync.changes_clamped_bib_records", 1),
        ("sierra_sync.changes_clamped_item_records", 2),
        ("sierra_sync.changes_clamped_seconds", clamped[2][1]),
    ]
    assert summary["clamped"]["item_records"] == 2
    assert data_ids(posted_files(backend)[0]) == [item_id(3)]


def test_clamped_window_with_fail_policy_posts_nothing(run_task, sierra, backend, clamp_case):
    with pytest.raises(AirflowFailException, match="clamp_policy is 'fail'"):
        run_task(max_sync_delta_minutes=60, clamp_policy="fail")
    assert post_attempts(backend) == 0
    assert backend.sync_mode == "SYNC_CHANGES" and backend.sync_changes_since == clamp_case
    assert sierra_sessions(sierra) == 0


@pytest.mark.parametrize(("overlap", "sent"), [(60, True), (0, False)])
def test_overlap_catches_an_item_updated_just_before_requested(run_task, sierra, backend, overlap, sent):
    build_catalogue(sierra, items=5)
    requested = db_now(sierra) - timedelta(minutes=5)
    backend.set_state("SYNC_CHANGES", requested)
    touch(sierra, item_id(4), requested - timedelta(seconds=30))

    summary = run_task(changes_overlap_seconds=overlap)
    assert summary["clamped"] is None
    assert data_ids(posted_files(backend)[0]) == ([item_id(4)] if sent else [])


def test_deleted_item_is_not_sent_and_bibless_item_is(run_task, sierra, backend):
    build_catalogue(sierra, items=8)
    now = db_now(sierra)
    backend.set_state("SYNC_CHANGES", now - timedelta(minutes=5))
    delete_item(sierra, item_id(6), now)
    touch(sierra, item_id(7), now)  # no bib link
    touch(sierra, item_id(2), now)

    summary = run_task()
    assert summary["rows"] == 2 and data_ids(posted_files(backend)[0]) == [item_id(2), item_id(7)]
    assert (
        backend.items[item_id(7)]["bib_record_id"] is None and backend.items[item_id(7)]["best_title"] is None
    )
    assert backend.sync_changes_since.isoformat() == summary["timestamps"][0]
    assert LINKS[7] == []


def test_window_bounds_are_exact_with_helsinki_session_timezone(
    run_task, sierra, sierra_dbname, backend, caplog
):
    caplog.set_level(logging.INFO)
    build_catalogue(sierra, items=3)
    requested = db_now(sierra).replace(microsecond=0) - timedelta(minutes=5)
    touch(sierra, item_id(1), requested - timedelta(seconds=1))
    touch(sierra, item_id(2), requested)
    touch(sierra, item_id(3), requested + timedelta(seconds=1))
    backend.set_state("SYNC_CHANGES", requested)
    with psycopg.connect(pgdb.dsn("postgres"), autocommit=True) as admin:
        statement = sql.SQL("ALTER DATABASE {} SET timezone = 'Europe/Helsinki'")
        admin.execute(statement.format(sql.Identifier(sierra_dbname)))
        try:
            run_task(changes_overlap_seconds=0)
        finally:
            admin.execute(sql.SQL("ALTER DATABASE {} RESET timezone").format(sql.Identifier(sierra_dbname)))
    assert "TimeZone Europe/Helsinki" in caplog.text
    assert data_ids(posted_files(backend)[0]) == [item_id(2), item_id(3)]
