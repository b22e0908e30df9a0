"""Failures: backend 5xx/timeouts/lost responses, auth, bad GET bodies, Sierra down, bad settings."""

from __future__ import annotations

import logging
import tempfile
from datetime import datetime
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from dev.signum_server import Fault
from tests.conftest import task_states
from tests.sierra.conftest import (
    API_KEY,
    DAG_ID,
    PRINTER_KEY,
    data_ids,
    post_attempts,
    posted_files,
    sierra_sessions,
)
from tests.sierra.fixtures import build_catalogue, expected_rows, item_id, stored_rows

pytestmark = pytest.mark.sierra


def committed_ids(backend) -> list[int]:
    return [item for text in posted_files(backend) for item in data_ids(text)]


def test_backend_500_mid_full_sync_fails_without_advancing_then_rerun_completes(
    run_dag, sierra, backend, sync_env
):
    sync_env(itype_null_fallback=0)
    build_catalogue(sierra)
    backend.inject("POST", Fault("pass"))
    backend.inject("POST", Fault("status", status=500), times=3)

    dr = run_dag(DAG_ID)
    assert task_states(dr) == {"sync_items": "failed"}
    assert post_attempts(backend) == 4  # batch 1, then retry_attempts (3) for batch 2, no more
    assert backend.sync_mode == "SYNC_FULL" and backend.last_synced_id() == item_id(10)
    assert sierra_sessions(sierra) == 0

    dr = run_dag(DAG_ID)
    assert dr.state == "success", task_states(dr)
    assert backend.sync_mode == "SYNC_CHANGES"
    ids = committed_ids(backend)
    assert sorted(ids) == ids and len(ids) == len(set(ids)) == 25  # nothing twice, nothing missing
    assert stored_rows(backend.items) == expected_rows(sierra, fallback=0)


def test_post_timeout_before_commit_resends_identical_bytes(run_task, sierra, backend):
    build_catalogue(sierra, items=15)
    backend.inject("POST", Fault("pass"))
    backend.inject("POST", Fault("hold", seconds=2.5))

    summary = run_task(itype_null_fallback=0)
    posts = [r for r in backend.requests if r["method"] == "POST"]
    assert len(posts) == 3 and posts[1]["text"] == posts[2]["text"]
    assert posts[1]["timestamp"] == posts[2]["timestamp"] and not posts[1].get("committed")
    assert summary["full_sync_completed"] and summary["rows"] == 15 and len(backend.items) == 15


@pytest.mark.parametrize("lost_post", [1, 3], ids=["non-final-full-batch", "final-full-batch"])
def test_lost_full_batch_response_is_reconciled_not_resent(run_task, sierra, backend, lost_post):
    build_catalogue(sierra)
    for _ in range(lost_post - 1):
        backend.inject("POST", Fault("pass"))
    backend.inject("POST", Fault("lost_response", seconds=2.5))

    summary = run_task(itype_null_fallback=0)
    assert post_attempts(backend) == 3  # one per batch: the lost one was not re-sent
    assert summary["batches"] == 3 and summary["full_sync_completed"]
    assert backend.sync_mode == "SYNC_CHANGES" and len(backend.items) == 25
    first_post = next(r for r in backend.requests if r["method"] == "POST")
    assert backend.sync_changes_since == datetime.fromisoformat(first_post["timestamp"])


def test_lost_changes_batch_response_is_reconciled(run_task, sierra, backend):
    build_catalogue(sierra, items=5)
    run_task(itype_null_fallback=0)
    backend.inject("POST", Fault("lost_response", seconds=2.5))
    before = post_attempts(backend)

    summary = run_task(itype_null_fallback=0)
    assert summary["mode"] == "SYNC_CHANGES" and post_attempts(backend) == before + 1
    assert backend.sync_changes_since == datetime.fromisoformat(summary["timestamps"][0])


def test_get_retries_503_with_growing_delays(run_task, sierra, backend):
    backend.inject("GET", Fault("status", status=503), times=2)
    summary = run_task(retry_attempts=5, retry_base_seconds=1, retry_max_seconds=60)
    assert summary["full_sync_completed"] and summary["rows"] == 0  # empty Sierra: one header-only file
    assert len(run_task.sleeps) == 2 and run_task.sleeps[0] < run_task.sleeps[1]
    assert 0.8 <= run_task.sleeps[0] <= 1.2 and 1.6 <= run_task.sleeps[1] <= 2.4  # ±20 % jitter


def test_post_429_waits_retry_after(run_task, sierra, backend):
    backend.inject("POST", Fault("status", status=429, retry_after=2))
    run_task(retry_max_seconds=30)
    assert run_task.sleeps == [2.0] and backend.sync_mode == "SYNC_CHANGES"


def test_post_500_every_time_makes_retry_attempts_then_fails(run_task, sierra, backend):
    backend.inject("POST", Fault("status", status=500), times=10)
    with pytest.raises(AirflowFailException, match="after 3 attempts"):
        run_task()
    assert post_attempts(backend) == 3
    assert backend.sync_mode == "SYNC_FULL" and backend.sync_changes_since is None
    assert not list(Path(tempfile.gettempdir()).glob("sierra-sync-*"))  # temp dir removed on failure
    assert sierra_sessions(sierra) == 0


@pytest.mark.parametrize("status", [400, 403, 422])
def test_post_4xx_is_not_retried(run_task, sierra, backend, status):
    backend.inject("POST", Fault("status", status=status), times=5)
    with pytest.raises(AirflowFailException, match=f"HTTP {status}"):
        run_task()
    assert post_attempts(backend) == 1 and not run_task.sleeps


@pytest.mark.parametrize("key", ["wrong-key-123456", PRINTER_KEY])
def test_wrong_api_key_fails_after_one_request_without_leaking_it(
    run_task, sierra, backend, backend_server, airflow_conn, caplog, key
):
    airflow_conn("signum_backend", backend_server.connection(key))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AirflowFailException, match="HTTP 403") as failure:
        run_task()
    assert len(backend.requests) == 1 and backend.requests[0]["headers"].count("x-api-key") == 1
    assert key not in str(failure.value) and key not in caplog.text


def test_api_key_in_connection_extra_is_sent(run_task, sierra, backend, backend_server, airflow_conn):
    connection = backend_server.connection(None)
    airflow_conn("signum_backend", {**connection, "extra": {"x-api-key": API_KEY}})
    summary = run_task()
    assert summary["full_sync_completed"]


def test_a_login_on_the_backend_connection_fails_before_any_request(
    run_task, sierra, backend, backend_server, airflow_conn
):
    airflow_conn("signum_backend", {**backend_server.connection(API_KEY), "login": "sierra"})
    with pytest.raises(AirflowFailException, match="has a login"):
        run_task()
    assert backend.requests == []


def test_missing_api_key_fails_before_any_request(run_task, sierra, backend, backend_server, airflow_conn):
    airflow_conn("signum_backend", backend_server.connection(None))
    with pytest.raises(AirflowFailException, match="no API key"):
        run_task()
    assert backend.requests == []


@pytest.mark.parametrize(
    "body",
    [
        {"sync_type": "SYNC_FULL", "batch_size": 10, "last_synced_id": 0},
        {"sync_mode": "SYNC_PARTIAL"},
        {"sync_mode": "SYNC_FULL", "batch_size": True, "last_synced_id": 0},
        {"sync_mode": "SYNC_FULL", "batch_size": 10.0, "last_synced_id": 0},
        {"sync_mode": "SYNC_CHANGES", "timestamp": "yesterday"},
    ],
    ids=["sync_type", "unknown-mode", "bool-batch", "float-batch", "bad-timestamp"],
)
def test_invalid_get_body_fails_before_sierra_is_touched(run_task, sierra, backend, monkeypatch, body):
    from etlkit.hooks.sierra import SierraHook

    opened = []
    monkeypatch.setattr(SierraHook, "get_conn", lambda self: opened.append(1))
    backend.sync_body = body
    with pytest.raises(AirflowFailException, match="GET /sync"):
        run_task()
    assert opened == [] and post_attempts(backend) == 0


@pytest.mark.parametrize("status", [403, 422])
def test_get_4xx_fails_after_exactly_one_request(run_task, sierra, backend, status):
    backend.inject("GET", Fault("status", status=status), times=5)
    with pytest.raises(AirflowFailException, match=f"GET /sync answered HTTP {status}"):
        run_task()
    assert len(backend.requests) == 1 and run_task.sleeps == []


def test_invalid_setting_fails_before_any_io(run_task, sierra, backend):
    with pytest.raises(AirflowFailException, match="clamp_policy"):
        run_task(clamp_policy="maybe")
    assert backend.requests == []


def test_sierra_unreachable_is_retried_then_fails_clearly(run_task, sierra, backend, airflow_conn):
    from dev.sshd import free_port

    airflow_conn(
        "sierra_dna", {"conn_type": "postgres", "host": "127.0.0.1", "port": free_port(), "schema": "x"}
    )
    with pytest.raises(AirflowFailException, match="Sierra extraction failed after 3 attempts"):
        run_task()
    assert len(run_task.sleeps) == 2 and post_attempts(backend) == 0


def test_sierra_permission_error_is_not_retried(run_task, sierra, backend):
    sierra.execute("REVOKE SELECT ON sierra_view.subfield FROM sierra_sync_reader")
    with pytest.raises(AirflowFailException, match="permission denied"):
        run_task()
    assert run_task.sleeps == [] and post_attempts(backend) == 0
    assert sierra_sessions(sierra) == 0


def test_extraction_transaction_is_read_only(sierra, sync_env):
    from etlkit.hooks.sierra import SierraHook

    with SierraHook("sierra_dna").snapshot(60) as snap:
        assert snap.conn.execute("SHOW transaction_read_only").fetchone()[0] == "on"
        assert snap.conn.execute("SHOW transaction_isolation").fetchone()[0] == "repeatable read"
        with pytest.raises(Exception, match="read-only transaction"):
            snap.conn.execute("CREATE TEMP TABLE t (x int)")
    assert sierra_sessions(sierra) == 0


def test_sierra_statement_timeout_is_not_retried(run_task, sierra, backend):
    from dev.sierra_data import generate

    generate(sierra, 5_000)
    with pytest.raises(AirflowFailException, match="statement timeout"):
        run_task(statement_timeout_seconds=0.001)
    assert run_task.sleeps == [] and post_attempts(backend) == 0
    assert sierra_sessions(sierra) == 0


def test_a_missing_sierra_connection_fails_before_any_request(run_task, sierra, backend, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_SIERRA_DNA")
    with pytest.raises(AirflowFailException, match="sierra_dna"):
        run_task()
    assert backend.requests == []


def test_a_sierra_connection_without_a_port_fails_before_any_request(
    run_task, sierra, sierra_dbname, backend, airflow_conn
):
    from dev import pgdb

    connection = {**pgdb.postgres_connection(sierra_dbname)}
    connection.pop("port")
    airflow_conn("sierra_dna", connection)
    with pytest.raises(AirflowFailException, match="has no port"):
        run_task()
    assert backend.requests == []


def test_connection_ids_are_the_operators_arguments(
    run_task, sierra, sierra_dbname, backend, monkeypatch, airflow_conn
):
    from dev import pgdb
    from dev.sierra_data import READER_ROLE

    monkeypatch.delenv("AIRFLOW_CONN_SIERRA_DNA")
    airflow_conn("sierra_replica", {**pgdb.postgres_connection(sierra_dbname), "login": READER_ROLE})
    summary = run_task({"sierra_conn_id": "sierra_replica"})
    assert summary["full_sync_completed"] and backend.sync_mode == "SYNC_CHANGES"


def test_connection_ids_left_in_the_variable_fail_before_any_io(run_task, sierra, backend):
    with pytest.raises(AirflowFailException, match=r"'sierra_conn_id' is no longer a setting"):
        run_task(sierra_conn_id="sierra_dna")
    assert backend.requests == []
