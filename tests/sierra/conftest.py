"""Sierra sync fixtures: a real sierra_view in its own PostgreSQL database and a local backend."""

from __future__ import annotations

import csv
import gzip
import io
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import psycopg
import pytest

from dev import pgdb, sierra_data
from dev.signum_server import BackendState, SignumServer

DAG_ID = "sierra_signum_item_sync"
API_KEY = "etl-key-3f9c1b7e5a"
PRINTER_KEY = "printer-key-77aa"
APPLICATION_NAME = "airflow-sierra-sync"
DAG_EXECUTION_TIMEOUT = timedelta(minutes=150)  # the DAG's default
# Fast in-task retries so failure tests finish in well under a second each.
FAST_SETTINGS = {
    "retry_attempts": 3,
    "retry_base_seconds": 0.01,
    "retry_max_seconds": 0.05,
    "get_timeout_seconds": 2,
    "post_timeout_seconds": 2,
}


@pytest.fixture(scope="session")
def sierra_dbname() -> Iterator[str]:
    with pgdb.temporary_database("etl_sierra") as name:
        yield name


@pytest.fixture
def sierra(sierra_dbname) -> Iterator[psycopg.Connection]:
    """An empty sierra_view (tables, itype and material names) and a SELECT-only reader role."""
    with psycopg.connect(pgdb.dsn(sierra_dbname), autocommit=True) as conn:
        sierra_data.create_schema(conn)
        sierra_data.grant_reader(conn)
        yield conn


@pytest.fixture(scope="session")
def backend_server() -> Iterator[SignumServer]:
    server = SignumServer(BackendState()).start()
    yield server
    server.stop()


@pytest.fixture
def backend(backend_server) -> BackendState:
    state = backend_server.state
    state.reset()
    state.batch_size = 10
    state.keys = {API_KEY: "etl", PRINTER_KEY: "signum-printer"}
    return state


@pytest.fixture
def sync_env(sierra_dbname, backend_server, airflow_conn, airflow_var):
    """Connections as deployments define them, plus fast retry settings; returns a settings setter."""
    airflow_conn(
        "sierra_dna",
        {
            **pgdb.postgres_connection(sierra_dbname),
            "login": sierra_data.READER_ROLE,
            "extra": {"application_name": APPLICATION_NAME},
        },
    )
    airflow_conn("signum_backend", backend_server.connection(API_KEY))

    def settings(**overrides):
        airflow_var("sierra_sync_settings", {**FAST_SETTINGS, **overrides})

    settings()
    return settings


def posted_files(state: BackendState) -> list[str]:
    """The decompressed files the backend committed, in order."""
    return [r["text"] for r in state.requests if r["method"] == "POST" and r.get("committed")]


def data_ids(text: str) -> list[int]:
    """Item ids of a posted file (first field of each row), read with a real CSV parser."""
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t"))
    return [int(r[0]) for r in rows[1:]]


def post_attempts(state: BackendState) -> int:
    return sum(1 for r in state.requests if r["method"] == "POST")


def sierra_sessions(
    conn: psycopg.Connection, settle_seconds: float = 3.0, *, dbname: str | None = None
) -> int:
    """Sessions of the DAG (or, given ``dbname``, any other session on that database) still open.

    A closed session's backend exits asynchronously, so poll.
    """
    if dbname is None:
        query, params = (
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (APPLICATION_NAME,),
        )
    else:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        params = (dbname,)
    deadline = time.monotonic() + settle_seconds
    while True:
        count = conn.execute(query, params).fetchone()[0]
        if count == 0 or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def gunzip_text(data: bytes) -> str:
    return gzip.decompress(data).decode("utf-8")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def run_task(sync_env, monkeypatch):
    """Run the sync task's operator directly (fast, no dag.test); returns (summary, metrics).

    ``sleeps`` records every in-task retry wait instead of sleeping.
    """
    from etlkit.common import retry
    from etlkit.operators import sierra as operator_module

    metrics: list[tuple[str, float]] = []
    sleeps: list[float] = []
    monkeypatch.setattr(operator_module, "_emit_metric", lambda name, value: metrics.append((name, value)))
    monkeypatch.setattr(retry.time, "sleep", sleeps.append)

    def run(operator_kwargs: dict | None = None, params: dict | None = None, **settings):
        """``settings`` go into the Variable, ``params`` are the run's (the trigger form's names)."""
        sync_env(**settings)
        operator = operator_module.SierraSignumSyncOperator(
            task_id="sync_items", **{"execution_timeout": DAG_EXECUTION_TIMEOUT, **(operator_kwargs or {})}
        )
        # The task runner's context holds the outlets' event accessors; a success sets its extra.
        run.outlet_events = defaultdict(SimpleNamespace)
        return operator.execute({"outlet_events": run.outlet_events, "params": params or {}})

    run.metrics = metrics
    run.sleeps = sleeps
    return run
