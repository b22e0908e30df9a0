"""The category watermark (spec §4.3): timestamps compared as instants, stored in the spec's ISO form."""

from __future__ import annotations

import pytest

from tests.conftest import task_states
from tests.enderturing.conftest import LOGICAL_DATE, WATERMARK_KEY, watermark_value
from tests.enderturing.test_dag_end_to_end import DAG_ID

pytestmark = pytest.mark.enderturing


def _stored(monkeypatch, value: str):
    """A Variable as the metadata DB would hand it back (set by hand in the UI, or by a run)."""
    from airflow.sdk import Variable

    store = {WATERMARK_KEY: value}

    def get(key, default=None, **kwargs):
        return store.get(key, default)

    def set_(key, value, serialize_json=False, **kwargs):
        store[key] = value

    monkeypatch.setattr(Variable, "get", staticmethod(get))
    monkeypatch.setattr(Variable, "set", staticmethod(set_))
    return store


@pytest.mark.parametrize(
    "hand_set",
    ["2024-06-30T00:00:00Z", "2024-06-30T03:00:00+03:00", "2024-06-30T00:00:00", "2024-06-30 00:00:00"],
    ids=["Z", "+03:00", "bare", "space"],
)
def test_the_same_instant_written_another_way_is_no_rewind(monkeypatch, hand_set):
    import json

    from etlkit.common.state import VariableWatermark

    store = _stored(monkeypatch, hand_set)
    VariableWatermark(WATERMARK_KEY).advance("2024-06-30T00:00:00.000000")
    assert json.loads(store[WATERMARK_KEY]) == {"value": "2024-06-30T00:00:00.000000"}


def test_a_later_instant_advances_and_is_stored_as_utc_wall_clock_with_microseconds(monkeypatch):
    import json

    from etlkit.common.state import VariableWatermark

    store = _stored(monkeypatch, "2024-06-30T03:00:00+03:00")
    VariableWatermark(WATERMARK_KEY).advance("2024-06-30T02:30:00.5+02:00")  # 00:30:00.5 UTC
    assert json.loads(store[WATERMARK_KEY]) == {"value": "2024-06-30T00:30:00.500000"}


def test_a_rewind_is_a_permanent_error_that_says_what_to_do(monkeypatch):
    from etlkit.common.errors import BadInputError
    from etlkit.common.state import VariableWatermark, WatermarkRewindError

    store = _stored(monkeypatch, "2024-06-30T00:00:00Z")
    with pytest.raises(WatermarkRewindError) as raised:
        VariableWatermark(WATERMARK_KEY).advance("2024-06-29T23:59:59.999999")
    assert isinstance(raised.value, BadInputError)  # the retry policy never retries it
    message = str(raised.value)
    assert WATERMARK_KEY in message and "by hand" in message and "mark this task success" in message
    assert store[WATERMARK_KEY] == "2024-06-30T00:00:00Z"  # left as it was
    VariableWatermark(WATERMARK_KEY).advance("2024-06-29T00:00:00", allow_rewind=True)
    assert "2024-06-29T00:00:00.000000" in store[WATERMARK_KEY]


def test_a_stored_value_that_is_no_timestamp_fails_with_the_variable_and_the_format(monkeypatch):
    from etlkit.common.errors import ConfigurationError
    from etlkit.common.state import VariableWatermark

    _stored(monkeypatch, "last tuesday")
    with pytest.raises(ConfigurationError, match=rf"{WATERMARK_KEY}.*ISO 8601"):
        VariableWatermark(WATERMARK_KEY).read()


def test_a_run_after_a_hand_set_z_watermark_succeeds_and_stores_the_spec_form(run_dag, et_airflow, warehouse):
    """An operator moved the watermark past every category by hand, in UTC with a Z: no category has
    changed, so no categories pass is sent, and the watermark stays at that instant in the spec's form."""
    from airflow.models.variable import Variable

    fake = et_airflow
    Variable.set(WATERMARK_KEY, "2024-06-30T00:00:00Z")  # a bare value, as typed into the UI

    dr = run_dag(DAG_ID, conf={"resync_lookback_days": 1}, logical_date=LOGICAL_DATE)

    assert dr.state == "success", task_states(dr)
    assert not [e for e in fake.requests_to(r"^/sessions$") if "categories" in e["query"]]
    assert watermark_value() == "2024-06-30T00:00:00.000000"
