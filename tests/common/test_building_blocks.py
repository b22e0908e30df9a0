"""Shared building blocks: retry policy, alert records, metrics."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from types import SimpleNamespace

import pytest
from airflow.sdk.definitions.retry_policy import RetryAction

from etlkit.common.alerting import alert_context, current_alert_context, failure_record, log_task_failure
from etlkit.common.errors import BadInputError, TransientError
from etlkit.common.metrics import RunMetrics
from etlkit.common.retry import RetrySettings
from etlkit.common.retry_policy import PipelineRetryPolicy, retry_default_args


def test_backoff_is_exponential_and_capped():
    settings = RetrySettings(retry_delay_s=10, backoff=2.0, max_retry_delay_s=60)
    assert [settings.delay_for(n).total_seconds() for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]


def test_policy_fails_bad_input_fast_and_retries_transient(airflow_var):
    airflow_var("etl_retry_policy", {"retries": 2, "retry_delay_s": 5, "pipelines": {"p": {"backoff": 3.0}}})
    policy = PipelineRetryPolicy("p")
    assert policy.evaluate(BadInputError("bad row"), 1, 6).action == RetryAction.FAIL
    decision = policy.evaluate(TransientError("503"), 2, 6)
    assert decision.action == RetryAction.RETRY and decision.retry_delay == timedelta(seconds=15)
    assert policy.evaluate(ConnectionError("down"), 3, 6).action == RetryAction.FAIL  # retries exhausted


def test_a_connection_dropped_mid_response_is_transient():
    import requests

    from etlkit.common.retry import is_transient

    assert is_transient(requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"))
    assert not is_transient(requests.exceptions.InvalidURL("no host"))


def test_policy_round_trips_serialization():
    policy = PipelineRetryPolicy("visits", retries=2, retry_delay_s=300)
    assert PipelineRetryPolicy.deserialize(policy.serialize()).defaults == {
        "retries": 2,
        "retry_delay_s": 300,
    }
    assert retry_default_args("visits", retries=2)["retries"] == 2


@pytest.mark.parametrize(
    "overrides",
    [{"pipelines": {"p": {"retry_dely": 1}}}, {"retires": 1}, {"pipeline": {"p": {"retries": 1}}}],
)
def test_unknown_retry_override_keys_are_an_error(overrides):
    with pytest.raises(ValueError, match="unknown keys"):
        RetrySettings.from_overrides(overrides, "p")


def test_failure_alert_is_one_structured_line_with_pipeline_context(caplog):
    ti = SimpleNamespace(dag_id="d", task_id="t", map_index=3, run_id="r1", try_number=2)
    with pytest.raises(TransientError) as raised, alert_context(file="report_7.txt"), alert_context(batch=2):
        raise TransientError("boom")
    with caplog.at_level(logging.ERROR, logger="etlkit.alerts"):
        log_task_failure({"ti": ti, "exception": raised.value})
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("ETL_ALERT "))
    assert json.loads(line.removeprefix("ETL_ALERT ")) == {
        "event": "task_failed",
        "outcome": "failed",
        "dag_id": "d",
        "task_id": "t",
        "map_index": 3,
        "run_id": "r1",
        "try_number": 2,
        "max_tries": None,
        "hostname": None,
        "error_type": "TransientError",
        "error": "boom",
        "params": {},
        "pipeline_context": {"file": "report_7.txt", "batch": 2},  # the innermost block's
    }
    assert failure_record({})["dag_id"] is None


def test_the_alert_context_travels_with_the_exception_and_never_outlives_its_block():
    with pytest.raises(ValueError) as raised, alert_context(file="a.txt"):
        raise ValueError("bad")
    assert current_alert_context() == {}  # a later task in the same process starts clean
    # An operator re-raising it (AirflowFailException(...) from exc) keeps the context.
    try:
        raise RuntimeError("wrapped") from raised.value
    except RuntimeError as wrapped:
        assert failure_record({"exception": wrapped})["pipeline_context"] == {"file": "a.txt"}
    assert failure_record({"exception": KeyError("elsewhere")})["pipeline_context"] == {}
    with alert_context(day="2024-06-26"):
        assert failure_record({})["pipeline_context"] == {"day": "2024-06-26"}


def test_metrics_add_and_xcom_shape():
    total = RunMetrics("p", rows_read=2, rows_loaded=1, rows_rejected=1, bytes_read=10, extra={"files": 1})
    total.add(RunMetrics("p", rows_read=3, rows_loaded=3, extra={"files": 1, "name": "x"}))
    assert total.as_xcom() == {
        "pipeline": "p",
        "rows_read": 5,
        "rows_loaded": 4,
        "rows_rejected": 1,
        "bytes_read": 10,
        "extra": {"files": 2},
    }


@pytest.mark.parametrize(
    "stored",
    ['{"value": "2024-06-26T10:00:00+00:00"}', "2024-06-26T10:00:00+00:00", '"2024-06-26T10:00:00+00:00"'],
    ids=["as-written", "set-by-hand", "json-string"],
)
def test_a_watermark_set_by_hand_as_a_bare_timestamp_is_read(airflow_var, stored):
    from etlkit.common.state import VariableWatermark

    airflow_var("some_watermark", stored)
    assert VariableWatermark("some_watermark").read() == "2024-06-26T10:00:00+00:00"
