"""The movies settings model: defaults, sources and their order, rules, and the trigger-form Params."""

from __future__ import annotations

import copy

import pytest
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import ParamValidationError

from etlkit.common.errors import ConfigurationError
from etlkit.movies.settings import MoviesSettings

pytestmark = pytest.mark.movies

# The DAG's Params before the settings model (issue 17), without the connection ids, which became
# operator arguments.
PREVIOUS_PARAMS = [
    "full_refresh",
    "reconcile",
    "pg_schema",
    "modified_column",
    "created_column",
    "index_alias",
    "batch_size",
    "bulk_chunk_docs",
    "bulk_chunk_bytes",
    "overlap_seconds",
    "max_reported_errors",
    "reconcile_interval_minutes",
    "full_refresh_interval_hours",
    "keep_previous_index",
]


def resolve(params=None, environ=None, defaults=None) -> MoviesSettings:
    return MoviesSettings.resolve({"params": params or {}}, environ=environ or {}, defaults=defaults)


def test_defaults_are_the_documented_ones():
    settings = resolve()
    assert settings.model_dump() == {
        "full_refresh": False,
        "reconcile": False,
        "pg_schema": "content",
        "modified_column": "modified",
        "created_column": "created",
        "index_alias": "movies",
        "batch_size": 1000,
        "bulk_chunk_docs": 500,
        "bulk_chunk_bytes": 10 * 1024 * 1024,
        "overlap_seconds": 60,
        "max_reported_errors": 10,
        "reconcile_interval_minutes": 60,
        "full_refresh_interval_hours": 24,
        "keep_previous_index": True,
    }


def test_dag_file_defaults_then_env_then_the_run_params_win():
    defaults = {"batch_size": 10}
    environ = {"MOVIES_ETL_BATCH_SIZE": "20"}
    assert resolve(defaults=defaults).batch_size == 10
    assert resolve(defaults=defaults, environ=environ).batch_size == 20
    assert resolve({"batch_size": 30}, environ, defaults).batch_size == 30
    assert resolve({"batch_size": None}, environ, defaults).batch_size == 20  # an empty Param keeps it


def test_booleans_from_the_trigger_form_from_env_and_from_a_scheduled_run():
    nulls = dict.fromkeys(PREVIOUS_PARAMS)  # a scheduled run: every Param at its null default
    scheduled = resolve(nulls)
    assert (scheduled.full_refresh, scheduled.reconcile, scheduled.keep_previous_index) == (
        False,
        False,
        True,
    )
    triggered = resolve({**nulls, "full_refresh": True, "reconcile": True, "keep_previous_index": False})
    assert (triggered.full_refresh, triggered.reconcile, triggered.keep_previous_index) == (True, True, False)
    environ = {"MOVIES_ETL_FULL_REFRESH": "true", "MOVIES_ETL_KEEP_PREVIOUS_INDEX": "false"}
    from_env = resolve(nulls, environ)
    assert (from_env.full_refresh, from_env.keep_previous_index) == (True, False)
    assert resolve({"full_refresh": False}, environ).full_refresh is False  # the form's explicit false wins


def test_an_unknown_key_is_refused_naming_it():
    with pytest.raises(ConfigurationError, match=r"settings_defaults: unknown keys \['batch_sise'\]"):
        resolve(defaults={"batch_sise": 5})
    with pytest.raises(ConfigurationError, match=r"unknown keys \['pg_conn_id'\]"):
        resolve(defaults={"pg_conn_id": "movies_postgres"})  # connection ids are operator arguments


@pytest.mark.parametrize(
    ("source", "field"),
    [
        ({"params": {"batch_size": 0}}, "batch_size (from the run's params)"),
        ({"params": {"index_alias": "Movies"}}, "index_alias (from the run's params)"),
        ({"params": {"pg_schema": ""}}, "pg_schema (from the run's params)"),
        ({"environ": {"MOVIES_ETL_OVERLAP_SECONDS": "soon"}}, "overlap_seconds (from environment variables"),
        ({"environ": {"MOVIES_ETL_FULL_REFRESH": "maybe"}}, "full_refresh (from environment variables"),
        ({"defaults": {"reconcile_interval_minutes": -1}}, "reconcile_interval_minutes (from the DAG file"),
    ],
)
def test_a_bad_value_names_the_field_and_its_source(source, field):
    with pytest.raises(ConfigurationError) as caught:
        resolve(**source)
    assert field in str(caught.value)


def test_dag_params_are_the_previous_params_nullable():
    params = MoviesSettings.dag_params()
    assert list(params) == PREVIOUS_PARAMS
    assert all(param.value is None for param in params.values())
    assert ParamsDict(copy.deepcopy(params)).validate()["full_refresh"] is None  # a scheduled run
    form = ParamsDict(copy.deepcopy(params))
    form.update({"full_refresh": True, "batch_size": 50, "index_alias": "films"})
    assert form.validate()["full_refresh"] is True
    for bad in ({"batch_size": 0}, {"full_refresh": "yes"}, {"pg_schema": ""}):
        with pytest.raises(ParamValidationError):
            ParamsDict(copy.deepcopy(params)).update(bad)


def test_dag_uses_the_settings_params_and_conn_ids_as_operator_arguments(dag_bag):
    from airflow.sdk.definitions.xcom_arg import XComArg

    dag = dag_bag.get_dag("movies_postgres_to_elasticsearch")
    assert sorted(dag.params) == sorted(PREVIOUS_PARAMS)
    for task in dag.tasks:
        assert (task.pg_conn_id, task.es_conn_id) == ("movies_postgres", "movies_elasticsearch")
        assert {"pg_conn_id", "es_conn_id"} <= set(task.template_fields)
    wired = {
        "sync": {"plan": "plan"},
        "publish": {"plan": "plan", "synced": "sync"},
        "commit_state": {"plan": "plan", "synced": "sync"},
        "reconcile": {"plan": "plan", "synced": "sync", "committed": "commit_state"},
    }
    for task_id, inputs in wired.items():
        task = dag.get_task(task_id)
        for name, upstream in inputs.items():
            value = getattr(task, name)
            assert isinstance(value, XComArg) and value.operator.task_id == upstream, (task_id, name)


def test_a_run_conf_with_a_key_that_is_no_setting_is_refused():
    from etlkit.movies.settings import check_run_params

    check_run_params({**dict.fromkeys(PREVIOUS_PARAMS), "full_refresh": True, "pg_conn_id": None})
    with pytest.raises(ConfigurationError, match="pg_conn_id, es_conn_id are no longer run Params"):
        check_run_params({"pg_conn_id": "other_pg", "es_conn_id": "other_es"})
    with pytest.raises(ConfigurationError, match=r"unknown keys \['full_refesh'\]"):
        check_run_params({"full_refesh": True})
