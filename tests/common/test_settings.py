"""The shared settings base: one resolution order, unknown keys refused, trigger-form Params."""

from __future__ import annotations

import json
import logging
from typing import Literal

import pytest
from airflow.sdk.exceptions import ParamValidationError
from pydantic import Field, model_validator

from etlkit.common.errors import ConfigurationError
from etlkit.common.settings import Integer, Number, PipelineSettings


class ExampleSettings(PipelineSettings):
    VARIABLE = "example_settings"
    ENV_PREFIX = "EXAMPLE_ETL_"
    RUN_PARAMS = ("batch_size", "dry_run", "mode", "limit")

    batch_size: int = Field(1000, ge=1, description="Rows per batch")
    dry_run: bool = Field(False, description="Commit nothing")
    mode: Literal["fast", "safe"] = Field("safe", description="How to load")
    limit: int | None = Field(None, ge=1, description="At most this many rows")
    tables: list[str] = Field(default_factory=lambda: ["a"], description="Tables to load")
    retry_base: float = 1.0
    retry_max: float = 10.0

    @model_validator(mode="after")
    def _base_below_max(self):
        if self.retry_base > self.retry_max:
            raise ValueError("retry_base exceeds retry_max")
        return self


def resolve(**kwargs):
    kwargs.setdefault("environ", {})
    kwargs.setdefault("read_variable", False)
    return ExampleSettings.resolve(**kwargs)


def test_defaults_when_no_source_sets_anything():
    settings = resolve()
    assert (settings.batch_size, settings.dry_run, settings.mode, settings.limit) == (
        1000,
        False,
        "safe",
        None,
    )
    assert settings.tables == ["a"]


def test_each_source_overrides_the_ones_before_it():
    environ = {"EXAMPLE_ETL_BATCH_SIZE": "20", "EXAMPLE_ETL_MODE": "fast", "EXAMPLE_ETL_TABLES": '["x", "y"]'}
    defaults = {"batch_size": 10, "retry_max": 30}
    assert resolve(defaults=defaults).batch_size == 10
    from_env = resolve(defaults=defaults, environ=environ)
    assert (from_env.batch_size, from_env.mode, from_env.tables, from_env.retry_max) == (
        20,
        "fast",
        ["x", "y"],
        30,
    )
    from_variable = resolve(defaults=defaults, environ=environ, variable=json.dumps({"batch_size": 30}))
    assert (from_variable.batch_size, from_variable.mode) == (30, "fast")
    context = {"params": {"batch_size": 40, "dry_run": None, "mode": None}}
    from_params = resolve(context=context, defaults=defaults, environ=environ, variable={"batch_size": 30})
    assert (from_params.batch_size, from_params.dry_run, from_params.mode) == (40, False, "fast")


def test_params_outside_run_params_are_not_taken():
    settings = resolve(context={"params": {"retry_max": 99, "unrelated_dag_param": "x"}})
    assert settings.retry_max == 10.0


@pytest.mark.parametrize(
    "kwargs, source",
    [
        ({"variable": {"batch_sise": 5}}, "Variable example_settings: unknown keys ['batch_sise']"),
        ({"environ": {}, "defaults": {"nope": 1}}, "the DAG file's settings_defaults: unknown keys ['nope']"),
    ],
)
def test_unknown_keys_are_an_error_naming_their_source(kwargs, source):
    with pytest.raises(ConfigurationError) as raised:
        resolve(**kwargs)
    assert source in str(raised.value)


def test_a_bad_value_names_field_and_source_but_not_the_value():
    with pytest.raises(ConfigurationError) as raised:
        resolve(variable={"batch_size": -7123})
    message = str(raised.value)
    assert "batch_size (from Variable example_settings)" in message
    assert "greater than or equal to 1" in message
    assert "-7123" not in message
    with pytest.raises(ConfigurationError, match=r"mode \(from environment variables EXAMPLE_ETL_\*\)"):
        resolve(environ={"EXAMPLE_ETL_MODE": "reckless"})


def test_cross_field_rules_are_reported_without_a_field_name():
    with pytest.raises(ConfigurationError, match="retry_base exceeds retry_max"):
        resolve(variable={"retry_base": 20})


@pytest.mark.parametrize("raw, fragment", [("{not json", "is not JSON"), ("[1, 2]", "must be a JSON object")])
def test_a_variable_that_is_not_a_json_object_is_refused(raw, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        resolve(variable=raw)


def test_settings_are_frozen():
    settings = resolve()
    with pytest.raises(ValueError):
        settings.batch_size = 5


def test_dag_params_are_nullable_with_the_fields_schema_and_default_in_the_description():
    params = ExampleSettings.dag_params(limit={"maximum": 100})
    assert list(params) == ["batch_size", "dry_run", "mode", "limit"]
    for param in params.values():
        assert param.value is None
    assert params["batch_size"].schema["type"] == ["integer", "null"]
    assert params["batch_size"].schema["minimum"] == 1
    assert params["batch_size"].description == "Rows per batch (default 1000)"
    assert params["mode"].schema["enum"] == ["fast", "safe", None]
    assert params["limit"].schema["maximum"] == 100
    params["batch_size"].resolve(5)
    params["mode"].resolve(None)
    with pytest.raises(ParamValidationError):
        params["batch_size"].resolve(0)
    with pytest.raises(ParamValidationError):
        params["mode"].resolve("reckless")


def test_params_round_trip_into_resolve():
    params = {name: param.value for name, param in ExampleSettings.dag_params().items()}
    assert resolve(context={"params": params}) == resolve()


class RenamedSettings(PipelineSettings):
    VARIABLE = "renamed_settings"
    ENV_PREFIX = "X_"
    RUN_PARAMS = ("max_batches_per_run",)
    PARAM_NAMES = {"max_batches_per_run": "max_batches"}
    MOVED_KEYS = {"source_conn_id": "an operator argument now; set it in the DAG file"}

    max_batches_per_run: Integer = Field(10, ge=1, description="Batches per run")
    ratio: Number = 0.5


def test_a_param_keeps_its_former_name_in_the_form_and_in_resolve():
    params = RenamedSettings.dag_params()
    assert list(params) == ["max_batches"]
    settings = RenamedSettings.resolve({"params": {"max_batches": 3}}, environ={}, read_variable=False)
    assert settings.max_batches_per_run == 3
    assert RenamedSettings.resolve({"params": {"max_batches": None}}, environ={}, read_variable=False) == (
        RenamedSettings()
    )


def test_a_moved_key_says_where_it_went():
    with pytest.raises(ConfigurationError) as raised:
        RenamedSettings.resolve(variable={"source_conn_id": "db", "typo": 1}, environ={})
    message = str(raised.value)
    assert (
        "Variable renamed_settings: 'source_conn_id' is no longer a setting: an operator argument now"
        in message
    )
    assert "unknown keys ['typo']" in message


@pytest.mark.parametrize("field", ["max_batches_per_run", "ratio"])
def test_numbers_refuse_true_and_false(field):
    with pytest.raises(ConfigurationError, match=f"{field} .*must be a number, not true/false"):
        RenamedSettings.resolve(variable={field: True}, environ={})
    assert (
        getattr(RenamedSettings.resolve(environ={f"X_{field.upper()}": "2"}, read_variable=False), field) == 2
    )


def test_the_log_says_each_set_value_and_its_source(caplog):
    with caplog.at_level(logging.INFO, logger="etlkit.common.settings"):
        resolve(environ={"EXAMPLE_ETL_MODE": "fast"}, context={"params": {"batch_size": 40}})
        resolve()
    assert (
        "ExampleSettings: batch_size=40 (the run's params); mode='fast' (environment variables EXAMPLE_ETL_*)"
        in (caplog.text)
    )
    assert "ExampleSettings: the defaults" in caplog.text
