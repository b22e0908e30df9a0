"""Resolution of logical connection names per environment (what _prepare does), without Airflow."""

from __future__ import annotations

import pytest

from etlkit.common.errors import ConfigurationError
from etlkit.jobs.environment import resolve_run_context
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


def resolve(settings, environment=None):
    return resolve_run_context(ORDERS, settings, environment, CONNECTIONS.get, lambda conn_id: None)


def test_default_and_requested_environments():
    assert resolve(SETTINGS)["connections"] == {"warehouse": "pg_dev"}
    context = resolve(SETTINGS, "TEST")
    assert (context["environment"], context["connections"], context["data_root"]) == (
        "TEST",
        {"warehouse": "pg_test"},
        "/data/test",
    )
    assert context["job_file_sha256"] == ORDERS.sha256


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
    context = resolve_run_context(ORDERS, None, None, {"warehouse": "postgres"}.get, lambda conn_id: None)
    assert context["connections"] == {"warehouse": "warehouse"} and context["environment"] is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        # An environment at the top level instead of under "environments" (the old compose mistake).
        (
            {"default_environment": "DEV", "DEV": {"data_root": "/d"}},
            r"Variable 'declarative_jobs': unknown keys \['DEV'\]",
        ),
        ({**SETTINGS, "staging": {"root": "/s", "retention": 3}}, r"staging: unknown keys \['retention'\]"),
        (
            {"environments": {"DEV": {"data_root": "/d", "connection": {"warehouse": "pg_dev"}}}},
            r"environment 'DEV': unknown keys \['connection'\]",
        ),
        ({"environments": {"DEV": "pg_dev"}}, "environment 'DEV': expected an object, got str"),
        (
            {"staging": {"root": "/data/staging", "conn_id": "aws_etl"}},
            "staging: conn_id 'aws_etl' needs an object storage root",
        ),
    ],
)
def test_misplaced_or_misspelt_settings_keys_are_configuration_errors(settings, message):
    with pytest.raises(ConfigurationError, match=message):
        resolve(settings)
