"""Gentle on the production database: one connection, the selection once per batch."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException

from dev.sierra_data import READER_ROLE, item_id, touch
from tests.sierra.conftest import post_attempts, sierra_sessions
from tests.sierra.fixtures import build_catalogue

pytestmark = pytest.mark.sierra

# Text that only the mode's selection queries hold (include/sql/sierra/*_item_ids.sql).
SELECTION_MARKERS = ("ir.record_id > %(last_synced_id)s", "rm.record_last_updated_gmt >= %(since)s")


@pytest.fixture
def sierra_statements(monkeypatch):
    """Every statement the sync sends to Sierra, and the most sessions it held open at once."""
    from etlkit.hooks.sierra import SierraHook

    log = {"statements": [], "open": 0, "most_open": 0}
    lock = threading.Lock()
    real_get_conn = SierraHook.get_conn

    class CountingCursor(psycopg.Cursor):
        def _record(self, query):
            text = query if isinstance(query, str) else query.as_string(self.connection)
            with lock:
                log["statements"].append(text)

        def execute(self, query, params=None, **kwargs):
            self._record(query)
            return super().execute(query, params, **kwargs)

        def copy(self, statement, params=None, **kwargs):
            self._record(statement)
            return super().copy(statement, params, **kwargs)

    def counting_get_conn(self):
        conn = real_get_conn(self)
        conn.cursor_factory = CountingCursor
        real_close = conn.close
        with lock:
            log["open"] += 1
            log["most_open"] = max(log["most_open"], log["open"])

        def close():
            if not conn.closed:
                with lock:
                    log["open"] -= 1
            real_close()

        conn.close = close
        return conn

    monkeypatch.setattr(SierraHook, "get_conn", counting_get_conn)
    log["selections"] = lambda: sum(
        1 for text in log["statements"] if any(marker in text for marker in SELECTION_MARKERS)
    )
    return log


def test_full_sync_runs_the_selection_once_per_batch_on_one_connection(
    run_task, sierra, backend, sierra_statements
):
    build_catalogue(sierra)
    # Batches big enough to be cut into parts if parallelism were on by default.
    summary = run_task(itype_null_fallback=0, extract_min_items_per_part=2)
    assert summary["batches"] == 3
    assert sierra_statements["selections"]() == 3
    assert sierra_statements["most_open"] == 1
    assert sierra_sessions(sierra) == 0


def test_changes_batch_runs_the_selection_once(run_task, sierra, backend, sierra_statements):
    build_catalogue(sierra, items=6)
    now = sierra.execute("SELECT now()").fetchone()[0]
    backend.set_state("SYNC_CHANGES", now - timedelta(minutes=5))
    touch(sierra, item_id(2), now)
    summary = run_task(itype_null_fallback=0)
    assert summary["rows"] == 1
    assert sierra_statements["selections"]() == 1 and sierra_statements["most_open"] == 1


def test_configured_parallelism_opens_at_most_that_many_connections(
    run_task, sierra, backend, sierra_statements
):
    build_catalogue(sierra)
    run_task(itype_null_fallback=0, extract_parallelism=2, extract_min_items_per_part=2)
    assert sierra_statements["most_open"] == 2


def test_a_role_without_temp_privilege_fails_at_once_with_the_remedy(
    run_task, sierra, sierra_dbname, backend
):
    from psycopg import sql

    build_catalogue(sierra, items=3)
    database = sql.Identifier(sierra_dbname)
    sierra.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(database))
    try:
        with pytest.raises(AirflowFailException, match="GRANT TEMPORARY ON DATABASE"):
            run_task()
        assert run_task.sleeps == [] and post_attempts(backend) == 0
        assert sierra_sessions(sierra) == 0
        sierra.execute(
            sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(database, sql.Identifier(READER_ROLE))
        )
        assert run_task(itype_null_fallback=0)["rows"] == 3
    finally:
        sierra.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO PUBLIC").format(database))
        sierra.execute(
            sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM {}").format(database, sql.Identifier(READER_ROLE))
        )
