"""EnderTuringSettings, the XCom between the tasks and the DAG's wiring of both."""

from __future__ import annotations

import json

import pytest

from etlkit.common.errors import BadInputError, ConfigurationError
from etlkit.enderturing.run import DictionaryRefresh, watermark_to_store
from etlkit.enderturing.settings import EnderTuringSettings
from tests.conftest import task_states
from tests.enderturing.conftest import LOGICAL_DATE, watermark_value

pytestmark = pytest.mark.enderturing
DAG_ID = "enderturing_to_warehouse"
# The DAG's Params before the settings model: users' trigger configs use these names.
FORMER_PARAMS = {
    "limit_sessions",
    "run_resync",
    "resync_lookback_days",
    "window_cap",
    "page_size",
    "fetch_summaries",
    "fetch_comments",
    "max_detail_failures",
}


def resolve(context=None, **kwargs):
    kwargs.setdefault("environ", {})
    kwargs.setdefault("read_variable", False)
    return EnderTuringSettings.resolve(context, **kwargs)


def test_the_defaults_are_the_former_param_defaults():
    settings = resolve()
    assert settings.model_dump() == {
        "limit_sessions": None,
        "run_resync": True,
        "resync_lookback_days": 30,
        "window_cap": 10_000,
        "page_size": 500,
        "fetch_summaries": True,
        "fetch_comments": False,
        "max_detail_failures": 10,
    }
    assert settings.effective_page_size == 500
    assert EnderTuringSettings(limit_sessions=200).effective_page_size == 200


def test_an_unknown_key_in_the_variable_is_refused_naming_it():
    with pytest.raises(
        ConfigurationError, match=r"Variable enderturing_settings: unknown keys \['page_sise'\]"
    ):
        resolve(variable=json.dumps({"page_sise": 100}))


def test_env_then_variable_then_params_each_override_the_one_before():
    environ = {"ETLKIT_ENDERTURING_PAGE_SIZE": "200", "ETLKIT_ENDERTURING_FETCH_COMMENTS": "true"}
    assert resolve(defaults={"page_size": 100}).page_size == 100
    from_env = resolve(defaults={"page_size": 100}, environ=environ)
    assert (from_env.page_size, from_env.fetch_comments) == (200, True)
    assert resolve(environ=environ, variable={"page_size": 300}).page_size == 300
    context = {"params": {"page_size": 400, "fetch_comments": None}}
    from_params = resolve(context, environ=environ, variable={"page_size": 300})
    assert (from_params.page_size, from_params.fetch_comments) == (400, True)  # null keeps the env value


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"window_cap": 1}, "window_cap"),
        ({"limit_sessions": 0}, "limit_sessions"),
        ({"page_size": "x"}, "page_size"),
    ],
)
def test_a_value_out_of_range_names_the_field_and_its_source(values, field):
    with pytest.raises(ConfigurationError, match=rf"{field} \(from Variable enderturing_settings\)"):
        resolve(variable=values)


def test_dag_params_keep_the_former_names_and_are_the_dags_params(dag_bag):
    params = EnderTuringSettings.dag_params()
    assert set(params) == FORMER_PARAMS
    assert all(params[name].value is None for name in params)  # null: keep the configured value
    dag = dag_bag.get_dag(DAG_ID)
    assert set(dag.params) == FORMER_PARAMS
    assert dag.params.get_param("window_cap").schema == params["window_cap"].schema


def test_the_refresh_xcom_is_readable_json_and_reads_back():
    refresh = DictionaryRefresh(
        (3, 7), "2024-06-30T00:00:00.000000", {"labels": {"staged": 8, "inserted": 8}}
    )
    value = json.loads(json.dumps(refresh.to_xcom()))
    assert value == {
        "changed_category_ids": [3, 7],
        "watermark_candidate": "2024-06-30T00:00:00.000000",
        "tables": {"labels": {"staged": 8, "inserted": 8}},
    }
    assert DictionaryRefresh.from_xcom(value) == refresh
    none_seen = DictionaryRefresh.from_xcom({"changed_category_ids": [], "watermark_candidate": None})
    assert none_seen.watermark_candidate is None and none_seen.changed_category_ids == ()


@pytest.mark.parametrize(
    "value", [None, "None", {"watermark_candidate": None}, {"changed_category_ids": ["x"]}]
)
def test_an_xcom_that_is_not_a_refresh_is_refused(value):
    with pytest.raises(BadInputError, match="refresh_dictionaries' XCom"):
        DictionaryRefresh.from_xcom(value)


@pytest.mark.parametrize(
    ("run_type", "values", "stored"),
    [
        ("scheduled", {}, "2024-06-30T00:00:00.000000"),
        ("manual", {}, "2024-06-30T00:00:00.000000"),
        ("backfill", {}, None),
        ("manual", {"run_resync": False}, None),
        ("manual", {"limit_sessions": 5}, None),
    ],
)
def test_only_complete_runs_store_the_watermark(run_type, values, stored):
    refresh = DictionaryRefresh((), "2024-06-30T00:00:00.000000")
    assert watermark_to_store(EnderTuringSettings(**values), run_type, refresh) == stored
    assert watermark_to_store(EnderTuringSettings(**values), run_type, DictionaryRefresh((), None)) is None


def test_operators_default_to_the_documented_connections_and_the_dag_sets_them(dag_bag):
    from etlkit.hooks.enderturing import EnderTuringHook
    from etlkit.operators import enderturing as operators

    schema = operators.EnderTuringSchemaOperator(task_id="schema")
    sync = operators.EnderTuringSyncSessionsOperator(task_id="sync", dictionaries={})
    assert schema.postgres_conn_id == sync.postgres_conn_id == "enderturing_warehouse"
    assert sync.enderturing_conn_id == EnderTuringHook.default_conn_name
    dag = dag_bag.get_dag(DAG_ID)
    for task_id in ("ensure_schema", "refresh_dictionaries", "sync_sessions"):
        task = dag.get_task(task_id)
        assert task.postgres_conn_id == "enderturing_warehouse"
        assert "postgres_conn_id" in task.template_fields
    for task_id in ("refresh_dictionaries", "sync_sessions"):
        assert dag.get_task(task_id).enderturing_conn_id == "enderturing_default"


def test_the_later_tasks_take_the_refresh_through_its_output(dag_bag):
    from airflow.sdk.definitions.xcom_arg import PlainXComArg

    dag = dag_bag.get_dag(DAG_ID)
    for task_id in ("sync_sessions", "advance_category_watermark"):
        arg = dag.get_task(task_id).dictionaries
        assert isinstance(arg, PlainXComArg), task_id
        assert (arg.operator.task_id, arg.key) == ("refresh_dictionaries", "return_value")


def test_the_variable_sets_a_run_and_a_null_param_keeps_it(run_dag, et_airflow, warehouse, airflow_var):
    """The Variable is read inside the tasks: test mode from it limits the listing and freezes the
    watermark, and the trigger form's empty field (null) does not undo it."""
    fake = et_airflow
    airflow_var("enderturing_settings", {"limit_sessions": 3, "resync_lookback_days": 1})

    dr = run_dag(DAG_ID, conf={"limit_sessions": None}, logical_date=LOGICAL_DATE)

    assert dr.state == "success", task_states(dr)
    listings = fake.requests_to(r"^/sessions$")
    assert listings and all("limit=3&" in e["query"] for e in listings)
    assert watermark_value() is None


def test_an_unknown_key_in_the_variable_fails_the_run_before_any_session_call(
    run_dag, et_airflow, warehouse, airflow_var
):
    fake = et_airflow
    airflow_var("enderturing_settings", {"page_sise": 100})

    dr = run_dag(DAG_ID, conf={"resync_lookback_days": 1}, logical_date=LOGICAL_DATE)

    assert dr.state == "failed"
    assert task_states(dr)["sync_sessions"] == "failed"
    assert fake.requests_to(r"^/sessions") == []
