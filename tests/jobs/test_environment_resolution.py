"""Resolution of logical connection names per environment (what _prepare does), without Airflow."""

from __future__ import annotations

import json

import pytest

from etlkit.common.errors import ConfigurationError
from etlkit.jobs.environment import RunContext, resolve_run_context
from etlkit.jobs.settings import JobsSettings
from etlkit.jobs.validation import load_job
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.jobs

ORDERS = load_job(REPO_ROOT / "dags" / "jobs" / "orders_daily_load.json")
CONNECTIONS = {"pg_dev": "postgres", "pg_test": "postgres", "an_http_api": "http"}
SETTINGS = {
    "default_environment": "DEV",
    "environments": {
        "DEV": {"data_root": "/data/dev", "connections": {"warehouse": "pg_dev"}},
        "TEST": {"data_root": "/data/test", "connections": {"warehouse": "pg_test"}},
        "PROD": {"data_root": "/data/prod", "connections": {"warehouse": "pg_prod_missing"}},
        "ODD": {"data_root": "/data/odd", "connections": {"warehouse": "an_http_api"}},
    },
}


def settings_from_variable(variable) -> JobsSettings:
    return JobsSettings.resolve(variable=variable, read_variable=False, environ={})


def resolve(variable, environment=None, conn_types=CONNECTIONS):
    settings = settings_from_variable(variable)
    return resolve_run_context(ORDERS, settings, environment, conn_types.get, lambda conn_id: None)


def test_default_and_requested_environments():
    assert resolve(SETTINGS).connections == {"warehouse": "pg_dev"}
    context = resolve(SETTINGS, "TEST")
    assert (context.environment, context.connections, context.data_root) == (
        "TEST",
        {"warehouse": "pg_test"},
        "/data/test",
    )
    assert context.job_file_sha256 == ORDERS.sha256


def test_unknown_connection_id_names_environment_logical_name_and_id():
    with pytest.raises(
        ConfigurationError,
        match="environment 'PROD': connection 'pg_prod_missing' for logical name 'warehouse' does not exist",
    ):
        resolve(SETTINGS, "PROD")


def test_wrong_connection_type_is_refused():
    with pytest.raises(ConfigurationError, match="has type 'http', expected postgres"):
        resolve(SETTINGS, "ODD")


def test_without_the_variable_logical_names_are_connection_ids():
    with pytest.raises(
        ConfigurationError, match="connection 'warehouse' for logical name 'warehouse' does not exist"
    ):
        resolve(None)
    context = resolve(None, conn_types={"warehouse": "postgres"})
    assert context.connections == {"warehouse": "warehouse"} and context.environment is None


def test_the_run_context_goes_through_xcom_unchanged():
    context = resolve(SETTINGS, "TEST")
    value = context.to_xcom()
    assert json.loads(json.dumps(value)) == value, "JSON-able"
    assert set(value) == {
        "environment",
        "connections",
        "file_roots",
        "data_root",
        "staging_root",
        "staging_conn_id",
        "metrics_conn_id",
        "job_file_sha256",
        "prepared_on",
        "started_at",
        "run_dir",
    }
    assert RunContext.from_xcom(value) == context
    with pytest.raises(ValueError, match=r"unknown keys \['password'\]"):
        RunContext.from_xcom({**value, "password": "x"})


def test_a_rendered_path_is_kept_under_its_root():
    context = resolve(SETTINGS, "TEST")
    assert str(context.file_path("exports/a.csv", None)) == "/data/test/exports/a.csv"
    with pytest.raises(ConfigurationError, match="escapes the data root"):
        context.file_path("../prod/a.csv", None)
