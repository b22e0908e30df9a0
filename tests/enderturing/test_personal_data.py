"""Malformed sessions fail with the session id, the field and the rule, never with their content:
error messages reach logs, the ETL_ALERT line and Sentry, and sessions are personal data."""

from __future__ import annotations

import json
import logging
import traceback

import pytest

from etlkit.common.errors import BadInputError
from tests.conftest import task_states
from tests.enderturing.conftest import LOGICAL_DATE
from tests.enderturing.test_dag_end_to_end import DAG_ID

pytestmark = pytest.mark.enderturing
MARKERS = ("marker.person@example.org", "+372 5550 1234")
PERSONAL = f"write to {MARKERS[0]} or call {MARKERS[1]}"


def record_texts(caplog) -> list[str]:
    texts = []
    for record in caplog.records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append("".join(traceback.format_exception(*record.exc_info)))
    return texts


def assert_no_marker(texts: list[str]) -> None:
    for text in texts:
        for marker in MARKERS:
            assert marker not in text, text


def test_a_session_with_a_malformed_tag_fails_naming_session_and_field_not_content(
    run_dag, et_airflow, warehouse, caplog
):
    fake = et_airflow
    victim = next(s for s in fake.dataset.sessions if s["start_dt"].startswith("2024-06-26"))
    victim["caller_id"] = MARKERS[1]
    victim["tags"] = [{"match": [{"matched_corpus_text": PERSONAL, "transcript_id": 1}], "words": PERSONAL}]
    caplog.set_level(logging.DEBUG)

    dr = run_dag(DAG_ID, conf={"resync_lookback_days": 1}, logical_date=LOGICAL_DATE)

    assert dr.state == "failed"
    assert task_states(dr)["sync_sessions"] == "failed"
    texts = record_texts(caplog)
    assert_no_marker(texts)
    alerts = [json.loads(t.split("ETL_ALERT ", 1)[1]) for t in texts if t.startswith("ETL_ALERT ")]
    [alert] = [a for a in alerts if a["task_id"] == "sync_sessions"]
    assert alert["error_type"] == "BadInputError"
    assert victim["id"] in alert["error"] and "tags[0]" in alert["error"] and "'id'" in alert["error"]
    assert warehouse.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [("summary", PERSONAL), ("comments", 42), ("scores", [{"point_scores": [], "meta": PERSONAL}])],
)
def test_a_malformed_per_session_answer_names_session_and_endpoint_not_content(endpoint, body):
    from etlkit.enderturing.transform import Transformer
    from tests.enderturing.test_transform import SESSION_ID, ListSink

    transformer = Transformer(ListSink())
    handler = {
        "summary": transformer.summaries,
        "comments": transformer.comments,
        "scores": transformer.scores,
    }
    with pytest.raises(BadInputError) as raised:
        handler[endpoint](SESSION_ID, body)
    message = str(raised.value)
    assert_no_marker([message])
    assert SESSION_ID in message and endpoint in message


def test_a_listed_item_without_id_names_its_place_not_its_content(tmp_path):
    from etlkit.enderturing import staging

    window = tmp_path / "main__2024-06-26_0000-1200.ndjson"
    with window.open("w") as out:
        staging.write_ndjson(out, [{"id": "7b0e4c3e-0000-4000-8000-000000000001"}, {"caller_id": PERSONAL}])
    with pytest.raises(BadInputError) as raised:
        staging.dedupe_sessions([window], tmp_path / staging.SESSIONS_FILE)
    message = str(raised.value)
    assert_no_marker([message])
    assert "item 1" in message and window.name in message and "'id'" in message


def test_an_unexpected_listing_body_is_described_not_quoted(fake_et, hook_for):
    from etlkit.enderturing.errors import EnderTuringRequestError

    fake, _ = fake_et
    fake.add_fault(r"^/sessions$", 1, status=200, body={"data": [{"caller_id": PERSONAL}]})
    with pytest.raises(EnderTuringRequestError) as raised:
        list(hook_for().iter_session_pages("date_range%2C2024-06-26%2C2024-06-26%7C%7C", 10))
    message = str(raised.value)
    assert_no_marker([message])
    assert "GET /sessions" in message and "'data'" in message


def test_a_value_postgresql_rejects_is_named_by_session_and_column_not_content(warehouse, tmp_path):
    """A value the transform let through but COPY refuses: psycopg's own error quotes the value."""
    from etlkit.enderturing import load
    from etlkit.enderturing import tables as t
    from etlkit.enderturing.staging import CopySpool

    load.ensure_schema(warehouse, "enderturing")
    session_id = "6f1c2b8e-3c1d-4e5f-9a7b-1234567890ab"
    row = [None] * len(t.SESSIONS.columns)
    row[t.SESSIONS.columns.index("id")] = session_id
    row[t.SESSIONS.columns.index("agent_id")] = MARKERS[0]
    row[t.SESSIONS.columns.index("extra")] = "{}"
    with CopySpool(tmp_path / "spool") as spool:
        spool.add(t.SESSIONS, tuple(row))

    with pytest.raises(BadInputError) as raised:
        load.load_tables(warehouse, "enderturing", [t.SESSIONS], [spool], load.SESSIONS_LOCK_KEY)

    message = str(raised.value)
    assert_no_marker(["".join(traceback.format_exception(raised.value)), message])
    assert session_id in message and "agent_id" in message and "sessions" in message, message
    assert "invalid input syntax for type integer" in message
