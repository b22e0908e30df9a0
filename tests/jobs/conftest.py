"""Fixtures of the declarative-jobs tests: a database with the example targets, roots, Variable."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import psycopg
import pytest

from dev import jobs_data, pgdb

pytestmark = pytest.mark.jobs

DAY = date(2025, 3, 2)


@pytest.fixture(scope="session")
def jobs_db():
    with pgdb.temporary_database("etl_jobs") as name:
        jobs_data.create_demo_tables(pgdb.dsn(name))
        yield name


@pytest.fixture
def jobs_dsn(jobs_db) -> str:
    dsn = pgdb.dsn(jobs_db)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("TRUNCATE sales.orders, sales.region_revenue, analytics.payment_events")
        connection.execute("DROP TABLE IF EXISTS declarative_component_runs, declarative_job_runs")
        # append mode writes a logical run once: each test starts with no earlier loads recorded
        connection.execute("DROP TABLE IF EXISTS sales.etlkit_append_log, analytics.etlkit_append_log")
    return dsn


def job_settings(data_root: Path, staging_root: Path) -> dict:
    return {
        "default_environment": "DEV",
        "metrics_conn_id": "jobs_metrics",
        "staging": {"root": str(staging_root), "retention_days": 7},
        "environments": {
            "DEV": {"data_root": str(data_root), "connections": {"warehouse": "jobs_warehouse_dev"}},
            "TEST": {
                "data_root": str(data_root / "test"),
                "connections": {"warehouse": "jobs_warehouse_test"},
            },
        },
    }


@pytest.fixture
def jobs_env(tmp_path, jobs_db, jobs_dsn, airflow_conn, airflow_var):
    """Roots in tmp_path, DEV and TEST warehouses (both the test database), the metrics connection."""
    data_root, staging_root = tmp_path / "data", tmp_path / "staging"
    data_root.mkdir()
    for conn_id in ("jobs_warehouse_dev", "jobs_warehouse_test", "jobs_metrics"):
        airflow_conn(conn_id, pgdb.postgres_connection(jobs_db))
    settings = job_settings(data_root, staging_root)
    airflow_var("declarative_jobs", settings)
    return {"data_root": data_root, "staging_root": staging_root, "dsn": jobs_dsn, "settings": settings}


def query(dsn: str, text: str, params=None) -> list[tuple]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(text, params).fetchall()


def component_rows(dsn: str, dag_id: str) -> dict[str, dict]:
    """Latest try of every component of the (single) run of ``dag_id`` in the metrics table."""
    with psycopg.connect(dsn) as connection:
        cursor = connection.execute(
            "SELECT DISTINCT ON (component_id) * FROM declarative_component_runs WHERE dag_id = %s "
            "ORDER BY component_id, try_number DESC",
            [dag_id],
        )
        names = [d.name for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return {row["component_id"]: row for row in rows}


def job_row(dsn: str, dag_id: str) -> dict:
    with psycopg.connect(dsn) as connection:
        cursor = connection.execute("SELECT * FROM declarative_job_runs WHERE dag_id = %s", [dag_id])
        names = [d.name for d in cursor.description]
        rows = cursor.fetchall()
    assert len(rows) == 1, rows
    return dict(zip(names, rows[0], strict=True))


def load_json(path: Path):
    return json.loads(path.read_text())


# ---- s3:// staging: a local S3-compatible server (moto in server mode) ---------------------------

S3_CONN_ID = "jobs_s3_staging"
S3_KEYS = {"login": "testing-key-id", "password": "testing-secret-key"}


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on a loopback port for the session: the real S3 REST API, over HTTP."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def s3_connection(endpoint: str, **keys) -> dict:
    """An Airflow AWS connection to ``endpoint`` (dummy keys: moto accepts any unless auth is on)."""
    return {
        "conn_type": "aws",
        **(keys or S3_KEYS),
        "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_KEYS["login"],
        aws_secret_access_key=S3_KEYS["password"],
        region_name="us-east-1",
    )


@pytest.fixture
def s3_staging(request, jobs_env, s3_endpoint, airflow_conn, airflow_var):
    """``jobs_env`` with staging on ``s3://<fresh bucket>/declarative`` through the AWS connection.

    The bucket is versioned, so what a run wrote and then removed stays listable as object versions.
    """
    import re
    import uuid

    bucket = f"{re.sub(r'[^a-z0-9]+', '-', request.node.name.lower())[:40].strip('-')}-{uuid.uuid4().hex[:8]}"
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    airflow_conn(S3_CONN_ID, s3_connection(s3_endpoint))
    root = f"s3://{bucket}/declarative"
    settings = {**jobs_env["settings"], "staging": {"root": root, "conn_id": S3_CONN_ID, "retention_days": 7}}
    airflow_var("declarative_jobs", settings)
    return {**jobs_env, "settings": settings, "bucket": bucket, "client": client, "s3_root": root}
