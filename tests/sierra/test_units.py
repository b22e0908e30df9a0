"""Airflow-free pieces: GET body validation, the window, delivery checks, backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from dev.sshd import free_port
from etlkit.common.retry import Backoff, is_transient
from etlkit.sierra.protocol import (
    SYNC_CHANGES,
    SYNC_FULL,
    BackendHttpError,
    InvalidSyncResponse,
    PostedBatch,
    SyncRequest,
    batch_delivered,
    format_timestamp,
    parse_sync_response,
)
from etlkit.sierra.window import changes_window

pytestmark = pytest.mark.sierra
T0 = datetime(2025, 3, 14, 8, 15, 30, 250000, tzinfo=UTC)


def test_sync_response_validation(caplog):
    full = parse_sync_response({"sync_mode": SYNC_FULL, "batch_size": 80000, "last_synced_id": 0, "x": 1})
    assert (full.batch_size, full.last_synced_id) == (80000, 0)
    changes = parse_sync_response({"sync_mode": SYNC_CHANGES, "timestamp": "2025-03-14T08:15:30.25+00:00"})
    assert changes.since == T0
    assert "UTC offset" not in caplog.text
    naive = parse_sync_response({"sync_mode": SYNC_CHANGES, "timestamp": "2025-03-14T08:15:30.25"})
    assert naive.since == T0  # no offset: read as UTC, with a warning
    assert "timestamp '2025-03-14T08:15:30.25' has no UTC offset; reading it as UTC" in caplog.text
    with pytest.raises(InvalidSyncResponse, match="sync_mode"):
        parse_sync_response({"sync_type": SYNC_FULL, "batch_size": 1, "last_synced_id": 0})
    with pytest.raises(InvalidSyncResponse, match="last_synced_id"):
        parse_sync_response({"sync_mode": SYNC_FULL, "batch_size": 1, "last_synced_id": -1})


def test_window_start_floor_and_clamp():
    now = T0
    inside = changes_window(now - timedelta(minutes=10), now, 60, 60)
    assert not inside.clamped and inside.bound == now - timedelta(minutes=11)
    clamped = changes_window(now - timedelta(hours=2), now, 60, 60)
    assert clamped.clamped and clamped.bound == now - timedelta(hours=1)
    assert clamped.skipped_seconds == 3660
    edge = changes_window(now - timedelta(minutes=59), now, 60, 60)  # start == floor: not clamped
    assert not edge.clamped and edge.bound == now - timedelta(hours=1)
    assert format_timestamp(T0) == "2025-03-14T08:15:30.250000+00:00"


def test_batch_delivered_rules():
    short_full = PostedBatch(SYNC_FULL, 5, 10, 105, T0)
    assert batch_delivered(short_full, SyncRequest(SYNC_CHANGES, since=T0))
    assert not batch_delivered(short_full, SyncRequest(SYNC_FULL, 10, 100))
    full = PostedBatch(SYNC_FULL, 10, 10, 110, T0)
    assert batch_delivered(full, SyncRequest(SYNC_FULL, 10, 110))
    assert not batch_delivered(full, SyncRequest(SYNC_FULL, 10, 100))
    changes = PostedBatch(SYNC_CHANGES, 3, None, 9, T0)
    # the same instant written with another offset is the same watermark
    assert batch_delivered(
        changes, SyncRequest(SYNC_CHANGES, since=T0.astimezone(timezone(timedelta(hours=2))))
    )
    assert not batch_delivered(changes, SyncRequest(SYNC_CHANGES, since=T0 - timedelta(seconds=1)))


def test_backoff_and_http_classification():
    backoff = Backoff(attempts=5, base_seconds=2, max_seconds=5)
    assert 1.6 <= backoff.delay(1) <= 2.4 and backoff.delay(4) == 5  # capped
    assert backoff.delay(1, retry_after=30) == 5 and backoff.delay(1, retry_after=2) == 2
    assert [is_transient(BackendHttpError("GET", s, "")) for s in (500, 503, 429, 400, 403, 422)] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    import requests

    assert is_transient(requests.ConnectTimeout()) and not is_transient(ValueError())


@pytest.mark.parametrize("retry_after", [-1.0, float("nan"), float("inf")])
def test_an_unusable_retry_after_falls_back_to_the_backoff(retry_after):
    backoff = Backoff(attempts=5, base_seconds=2, max_seconds=5)
    assert 1.6 <= backoff.delay(1, retry_after=retry_after) <= 2.4


@pytest.mark.parametrize(
    ("dsn", "retryable"),
    [
        ("host=127.0.0.1 dbname=etlkit_no_such_database user=postgres", False),
        ("host=127.0.0.1 dbname=postgres user=etlkit_no_such_role", False),
        (f"host=127.0.0.1 port={free_port()} dbname=postgres", True),  # refused: the server may come back
    ],
)
def test_connect_failures_retry_only_when_the_server_may_come_back(dsn, retryable):
    import psycopg

    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect(dsn, connect_timeout=5)
    assert is_transient(raised.value) is retryable
