"""Disposable databases on the machine's PostgreSQL (127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

PG_HOST = os.environ.get("ETLKIT_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("ETLKIT_PG_PORT", "5432"))
PG_USER = os.environ.get("ETLKIT_PG_USER", "postgres")


def dsn(dbname: str) -> str:
    return f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname={dbname}"


def create_database(prefix: str = "etlkit_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


@contextmanager
def temporary_database(prefix: str = "etlkit_test") -> Iterator[str]:
    """A fresh database, dropped (connections forced out) when the block ends."""
    name = create_database(prefix)
    try:
        yield name
    finally:
        drop_database(name)


def recreate_database(name: str) -> str:
    drop_database(name)
    with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def postgres_connection(dbname: str) -> dict:
    """The Airflow connection (JSON form) for a database on the local server."""
    return {
        "conn_type": "postgres",
        "host": PG_HOST,
        "port": PG_PORT,
        "login": PG_USER,
        "schema": dbname,
    }
