"""The ``declarative_jobs`` settings: one model (JobsSettings), unknown keys refused by name at every
level, sources in the shared order (defaults < DAG file < env ETLKIT_JOBS_* < Variable)."""

from __future__ import annotations

import json

import pytest

from etlkit.common.errors import ConfigurationError
from etlkit.jobs.settings import JobsSettings, default_root

pytestmark = pytest.mark.jobs


def resolve(variable=None, environ=None, defaults=None, params=None) -> JobsSettings:
    context = {"params": params or {}}
    return JobsSettings.resolve(
        context, defaults=defaults, environ=environ or {}, variable=variable, read_variable=False
    )


def test_defaults_without_the_variable():
    settings = resolve()
    assert (settings.default_environment, settings.metrics_conn_id, settings.environments) == (
        None,
        "etl_metrics_pg",
        {},
    )
    assert (settings.staging.root, settings.staging.conn_id, settings.staging.retention_days) == (
        None,
        None,
        7,
    )
    assert settings.staging.root_or_default() == str(default_root("staging"))


def test_the_variable_as_the_docs_show_it():
    variable = {
        "default_environment": "DEV",
        "metrics_conn_id": "etl_metrics_pg",
        "staging": {"root": "s3://etl-staging/declarative", "conn_id": "aws_etl", "retention_days": 3},
        "environments": {
            "DEV": {"data_root": "/data/dev", "connections": {"warehouse": "pg_wh_dev"}},
            "PROD": {"data_root": "/data/prod", "connections": {"warehouse": "pg_wh_prod"}},
        },
    }
    settings = resolve(json.dumps(variable))
    assert settings.staging.conn_id == "aws_etl" and settings.staging.retention_days == 3
    assert settings.environments["PROD"].connections == {"warehouse": "pg_wh_prod"}
    assert settings.model_dump() == variable


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        # An environment at the top level instead of under "environments" (the old compose mistake).
        (
            {"default_environment": "DEV", "DEV": {"data_root": "/d"}},
            r"Variable declarative_jobs: unknown keys \['DEV'\]",
        ),
        ({"staging": {"root": "/s", "retention": 3}}, r"staging .*unknown keys \['retention'\]"),
        (
            {"environments": {"DEV": {"data_root": "/d", "connection": {"warehouse": "pg_dev"}}}},
            r"environment 'DEV': unknown keys \['connection'\]",
        ),
        ({"environments": {"DEV": "pg_dev"}}, "environment 'DEV': expected an object, got str"),
        (
            {"staging": {"root": "/data/staging", "conn_id": "aws_etl"}},
            "conn_id 'aws_etl' needs an object storage root",
        ),
        ({"staging": {"retention_days": -1}}, "staging .*greater than or equal to 0"),
    ],
)
def test_misplaced_misspelt_or_invalid_keys_are_configuration_errors_naming_them(variable, message):
    with pytest.raises(ConfigurationError, match=message):
        resolve(variable)


def test_each_source_overrides_the_ones_before_it():
    defaults = {"metrics_conn_id": "from_dag_file", "default_environment": "DEV"}
    environ = {"ETLKIT_JOBS_METRICS_CONN_ID": "from_env", "ETLKIT_JOBS_STAGING": '{"root": "/env/staging"}'}
    variable = {"metrics_conn_id": "from_variable"}

    assert resolve(defaults=defaults).metrics_conn_id == "from_dag_file"
    from_env = resolve(defaults=defaults, environ=environ)
    assert (from_env.metrics_conn_id, from_env.staging.root) == ("from_env", "/env/staging")
    from_variable = resolve(variable, defaults=defaults, environ=environ)
    assert (from_variable.metrics_conn_id, from_variable.default_environment) == ("from_variable", "DEV")
    assert from_variable.staging.root == "/env/staging", "the Variable did not set staging"


def test_run_params_do_not_change_settings():
    # A run picks its environment with the `environment` Param; settings are not run Params.
    assert resolve(params={"metrics_conn_id": "x", "environment": "TEST"}).metrics_conn_id == "etl_metrics_pg"


def test_an_unknown_key_in_the_dag_files_defaults_is_refused():
    with pytest.raises(ConfigurationError, match=r"settings_defaults: unknown keys \['metric_conn_id'\]"):
        resolve(defaults={"metric_conn_id": "x"})


def test_the_variable_is_read_through_airflow(airflow_var):
    airflow_var("declarative_jobs", {"metrics_conn_id": "through_airflow"})
    assert JobsSettings.resolve({}, environ={}).metrics_conn_id == "through_airflow"


def test_job_dags_keep_their_one_param(dag_bag):
    # The settings have no run Params (JobsSettings.dag_params() is empty); `environment` is run-only.
    assert JobsSettings.dag_params() == {}
    for dag_id in ("orders_daily_load", "app_events_ingest", "customer_revenue_daily"):
        params = dag_bag.get_dag(dag_id).params
        assert set(params.keys()) == {"environment"}
        assert params.get_param("environment").value is None


def test_housekeeping_refuses_an_unknown_key_naming_it(airflow_var):
    from etlkit.operators.jobs import StagingHousekeepingOperator

    airflow_var("declarative_jobs", {"staging": {"root": "/tmp/x", "retention": 1}})
    with pytest.raises(ConfigurationError, match=r"unknown keys \['retention'\]"):
        StagingHousekeepingOperator(task_id="remove_stale_staging").execute({})
