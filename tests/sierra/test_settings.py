"""SierraSettings: defaults, refused keys and values, the order of the sources, the trigger form."""

from __future__ import annotations

import json
import re

import pytest

from etlkit.common.errors import ConfigurationError
from etlkit.sierra.settings import SierraSettings
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.sierra


def resolve(context=None, **kwargs):
    kwargs.setdefault("environ", {})
    kwargs.setdefault("read_variable", False)
    return SierraSettings.resolve(context, **kwargs)


def test_defaults_are_the_documented_ones():
    settings = resolve()
    assert settings == SierraSettings()
    assert (settings.max_batches_per_run, settings.statement_timeout_seconds, settings.retry_attempts) == (
        10,
        900,
        5,
    )
    assert settings.extract_parallelism == 1  # one connection to the production DB unless configured
    assert (settings.clamp_policy, settings.itype_null_fallback, settings.dry_run_dir) == ("warn", None, None)


def test_every_setting_is_documented_with_its_default():
    docs = (REPO_ROOT / "docs" / "sierra.md").read_text()
    for name, field in SierraSettings.model_fields.items():
        default = "null" if field.default is None else json.dumps(field.default)
        assert re.search(rf"`{name}` \(`?{re.escape(default)}", docs), (
            f"{name} ({default}) is not in docs/sierra.md"
        )


@pytest.mark.parametrize(
    "source, label",
    [("variable", "Variable sierra_sync_settings"), ("defaults", "the DAG file's settings_defaults")],
)
def test_an_unknown_key_is_refused_naming_it_and_its_source(source, label):
    with pytest.raises(ConfigurationError, match=rf"{label}: unknown keys \['surprise'\]"):
        resolve(**{source: {"surprise": 1}})


@pytest.mark.parametrize("key", ["sierra_conn_id", "backend_conn_id"])
def test_connection_ids_in_the_variable_point_to_the_migration(key):
    with pytest.raises(ConfigurationError, match=rf"'{key}' is no longer a setting.*Migrating"):
        resolve(variable={key: "sierra_dna"})


@pytest.mark.parametrize(
    "bad",
    [
        {"clamp_policy": "maybe"},
        {"max_batches_per_run": 0},
        {"retry_attempts": True},
        {"retry_base_seconds": False},
        {"itype_null_fallback": 256},
        {"itype_null_fallback": -1},
        {"changes_overlap_seconds": -1},
        {"statement_timeout_seconds": 0},
        {"extract_parallelism": 0},
        {"extract_parallelism": 5},
        {"extract_parallelism": True},
        {"extract_parallelism": 2.5},
    ],
)
def test_an_invalid_value_names_the_setting_and_its_source(bad):
    (name,) = bad
    with pytest.raises(ConfigurationError, match=rf"{name} \(from Variable sierra_sync_settings\)"):
        resolve(variable=bad)


def test_valid_edges_are_accepted():
    settings = resolve(
        variable={"itype_null_fallback": 0, "extract_parallelism": 4, "changes_overlap_seconds": 0}
    )
    assert (settings.itype_null_fallback, settings.extract_parallelism, settings.changes_overlap_seconds) == (
        0,
        4,
        0,
    )


def test_retry_base_above_max_is_refused():
    with pytest.raises(ConfigurationError, match="retry_base_seconds exceeds retry_max_seconds"):
        resolve(variable={"retry_base_seconds": 61})


def test_sources_override_in_order_dag_file_env_variable_param():
    env = {"SIERRA_SYNC_MAX_BATCHES_PER_RUN": "7", "SIERRA_SYNC_ITYPE_NULL_FALLBACK": "3"}
    assert resolve(defaults={"max_batches_per_run": 8}).max_batches_per_run == 8
    assert resolve(defaults={"max_batches_per_run": 8}, environ=env).max_batches_per_run == 7
    assert resolve(environ=env).itype_null_fallback == 3
    from_variable = resolve(environ=env, variable=json.dumps({"max_batches_per_run": 5}))
    assert from_variable.max_batches_per_run == 5 and from_variable.itype_null_fallback == 3
    # The trigger form's max_batches overrides max_batches_per_run; empty (null) keeps it.
    with_param = resolve({"params": {"max_batches": 3}}, environ=env, variable={"max_batches_per_run": 5})
    assert with_param.max_batches_per_run == 3
    kept = resolve(
        {"params": {"max_batches": None, "dry_run_dir": None}}, variable={"max_batches_per_run": 5}
    )
    assert kept.max_batches_per_run == 5 and kept.dry_run_dir is None


def test_only_the_trigger_forms_name_sets_max_batches_for_a_run():
    settings = resolve({"params": {"max_batches_per_run": 2}})
    assert settings.max_batches_per_run == 10


def test_a_run_param_that_breaks_a_rule_names_it():
    with pytest.raises(ConfigurationError, match=r"max_batches_per_run \(from the run's params\)"):
        resolve({"params": {"max_batches": 0}})


def test_an_empty_dry_run_dir_is_no_dry_run():
    assert resolve({"params": {"dry_run_dir": ""}}).dry_run_dir is None
    assert resolve({"params": {"dry_run_dir": "/tmp/x"}}).dry_run_dir == "/tmp/x"


def test_dag_params_keep_the_names_users_trigger_with():
    params = SierraSettings.dag_params()
    assert list(params) == ["max_batches", "dry_run_dir"]  # the DAG's Params before settings were a model
    assert all(param.value is None for param in params.values())
    assert params["max_batches"].schema == {"type": ["integer", "null"], "minimum": 1}
    assert params["dry_run_dir"].schema["type"] == ["null", "string"]
    assert params["max_batches"].description.endswith("(default 10)")
    untouched = resolve({"params": {name: param.value for name, param in params.items()}})
    assert untouched == SierraSettings()


def test_the_dag_offers_the_settings_params(dag_bag):
    from tests.sierra.conftest import DAG_ID

    dag = dag_bag.get_dag(DAG_ID)
    assert set(dag.params) == {"max_batches", "dry_run_dir"}
    assert dag.params.get_param("max_batches").schema == SierraSettings.dag_params()["max_batches"].schema
