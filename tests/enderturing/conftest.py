"""Fixtures of the Ender Turing pipeline: own warehouse database, fake ET server, Airflow env."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import psycopg
import pytest

from dev import pgdb
from dev.enderturing_server import FakeEnderTuring, RunningServer, generate_dataset, start_server

DAY = date(2024, 6, 26)
# dag.test() infers the manual data interval: the last complete day before the logical date.
LOGICAL_DATE = datetime(2024, 6, 27, 3, 0, tzinfo=UTC)
WATERMARK_KEY = "enderturing_categories_watermark"
SCHEMA = "enderturing"


@pytest.fixture(scope="session")
def et_database() -> Iterator[str]:
    with pgdb.temporary_database("etl_enderturing") as name:
        yield name


@pytest.fixture
def warehouse(et_database: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a warehouse database whose ``enderturing`` schema starts empty."""
    with psycopg.connect(pgdb.dsn(et_database), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"SET search_path TO {SCHEMA}")
        yield conn


@pytest.fixture
def fake_et() -> Iterator[tuple[FakeEnderTuring, RunningServer]]:
    fake = FakeEnderTuring(generate_dataset([DAY], 40, seed=7))
    server = start_server(fake)
    yield fake, server
    server.stop()


def et_connection(server: RunningServer, fake: FakeEnderTuring, **extra: object) -> dict:
    return {
        "conn_type": "http",
        "host": server.url,
        "login": fake.username,
        "password": fake.password,
        "extra": {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "max_attempts": 4, **extra},
    }


@pytest.fixture
def hook_for(fake_et, airflow_conn):
    """Builds an EnderTuringHook on the fake API; keyword arguments become connection extras."""
    fake, server = fake_et

    def build(**extra):
        from etlkit.hooks.enderturing import EnderTuringHook

        airflow_conn("enderturing_test", et_connection(server, fake, **extra))
        return EnderTuringHook("enderturing_test")

    return build


@pytest.fixture
def et_airflow(airflow_db, airflow_conn, airflow_var, fake_et, et_database, warehouse, tmp_path, monkeypatch):
    """Connections and Variables for one DAG test; the watermark Variable starts absent."""
    from airflow.models.variable import Variable

    fake, server = fake_et
    airflow_conn("enderturing_default", et_connection(server, fake))
    airflow_conn("enderturing_warehouse", pgdb.postgres_connection(et_database))
    # Failures must show on the first try: no task retries in these tests.
    airflow_var("etl_retry_policy", {"retries": 0, "retry_delay_s": 0})
    Variable.delete(WATERMARK_KEY)
    yield fake
    Variable.delete(WATERMARK_KEY)


def watermark_value() -> str | None:
    import json

    from airflow.models.variable import Variable

    raw = Variable.get(WATERMARK_KEY, default_var=None)
    return None if raw is None else json.loads(raw)["value"]
