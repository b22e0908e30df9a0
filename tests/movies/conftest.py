"""Fixtures of the movies pipeline: a source database per test, the ES-subset server, the state Variable."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import psycopg
import pytest

from dev import movies_data, pgdb
from dev.es_server import EsSubsetServer
from etlkit.movies.settings import MoviesSettings


@pytest.fixture
def es_factory() -> Iterator[Callable[[int], EsSubsetServer]]:
    servers: list[EsSubsetServer] = []

    def start(major: int = 8) -> EsSubsetServer:
        server = EsSubsetServer(major).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def es_server(es_factory) -> EsSubsetServer:
    return es_factory(8)


@pytest.fixture
def source_db() -> Iterator[str]:
    with pgdb.temporary_database("etl_movies") as name:
        yield name


@pytest.fixture
def source_conn(source_db) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pgdb.dsn(source_db), autocommit=True) as conn:
        yield conn


@pytest.fixture
def generated_source(source_conn) -> psycopg.Connection:
    """Convention A, 80 generated film works with the generator's full variety."""
    movies_data.create_schema(source_conn, "A")
    movies_data.generate(source_conn, 80, convention="A")
    return source_conn


DAG_ID = "movies_postgres_to_elasticsearch"


def run_movies(run_dag, conf: dict | None = None):
    """One run with every param stated; those ``conf`` leaves out are null, as in a scheduled run (the
    configured value)."""
    return run_dag(DAG_ID, conf={**dict.fromkeys(MoviesSettings.RUN_PARAMS), **(conf or {})})


def es_connection(server: EsSubsetServer, **extra) -> dict:
    return {"conn_type": "elasticsearch", "host": "127.0.0.1", "port": server.port, "extra": extra}


@pytest.fixture
def movies_connections(airflow_conn, source_db, es_server) -> EsSubsetServer:
    airflow_conn("movies_postgres", pgdb.postgres_connection(source_db))
    airflow_conn("movies_elasticsearch", es_connection(es_server))
    return es_server


def read_state() -> dict | None:
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(Variable).filter(Variable.key == "movies_etl_state").one_or_none()
        return None if row is None else json.loads(row.val)


@pytest.fixture
def clean_state(airflow_db) -> Iterator[None]:
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    def clear() -> None:
        with create_session() as session:
            session.query(Variable).filter(Variable.key == "movies_etl_state").delete()

    clear()
    yield
    clear()
