"""The DAG end to end with dag.test(): fake Ender Turing → PostgreSQL, checked table by table."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.conftest import task_states
from tests.enderturing.conftest import LOGICAL_DATE, watermark_value

pytestmark = pytest.mark.enderturing
DAG_ID = "enderturing_to_warehouse"


def expected_counts(dataset) -> dict[str, int]:
    sessions = dataset.sessions
    scores = set()
    for session_id, sheets in dataset.scores.items():
        for sheet in sheets:
            reviewer = sheet["reviewer_id"] if sheet["reviewer_id"] is not None else 0
            for point in sheet["point_scores"]:
                scores.add((session_id, sheet["scorecard_id"], reviewer, point["scorecard_point_id"]))
    return {
        "sessions": len(sessions),
        "sessions_tags": sum(max(1, len(tag["match"])) for s in sessions for tag in s["tags"]),
        "sessions_categories": sum(len(s["categories"]) for s in sessions),
        "sessions_reviewers": sum(len({r["id"] for r in s["reviewers"]}) for s in sessions),
        "sessions_crm_statuses": sum(
            len({c if isinstance(c, str) else c["crm_status"] for c in s["crm_statuses"]}) for s in sessions
        ),
        "sessions_scores": len(scores),
        "sessions_summaries": sum(len(items or []) for items in dataset.summaries.values()),
        "sessions_comments": 0,
        "agents": 20,
        "agent_group_associations": 20,
        "users": 26,  # 25 + synthetic user 0
        "categories": 8,
        "labels": 8,
        "category_labels": 8,
        "groups": 3,
        "scorecards": 2,
        "scorecard_categories": 4,
        "scorecard_points": 12,
        "tags": 12,
        "tag_labels": 6,
    }


def _rounded(value: str) -> str:
    moment = datetime.fromisoformat(value)
    return str(moment.replace(microsecond=0) + timedelta(seconds=1 if moment.microsecond >= 500_000 else 0))


def check_sampled_children(conn, dataset) -> None:
    scored = next(s for s in dataset.sessions if s["id"] in dataset.scores)
    sheet = dataset.scores[scored["id"]][0]
    point = sheet["point_scores"][0]
    reviewer = sheet["reviewer_id"] if sheet["reviewer_id"] is not None else 0
    row = conn.execute(
        "SELECT score, extra FROM sessions_scores WHERE session_id = %s AND scorecard_id = %s AND reviewer_id = %s "
        "AND scorecard_point_id = %s",
        (scored["id"], sheet["scorecard_id"], reviewer, point["scorecard_point_id"]),
    ).fetchone()
    assert float(row[0]) == point["score"] and row[1]["parent"]["meta"] == sheet["meta"]
    first_reviewer = scored["reviewers"][0]
    reviewed = conn.execute(
        "SELECT last_reviewed_at::text FROM sessions_reviewers WHERE session_id = %s AND reviewer_id = %s",
        (scored["id"], first_reviewer["id"]),
    ).fetchone()[0]
    assert reviewed in {
        _rounded(r["last_reviewed_at"]) for r in scored["reviewers"] if r["id"] == first_reviewer["id"]
    }
    categorised = next(s for s in dataset.sessions if s["categories"])
    categories = conn.execute(
        "SELECT category_id, is_verified FROM sessions_categories WHERE session_id = %s ORDER BY 1",
        (categorised["id"],),
    ).fetchall()
    assert categories == sorted((c["id"], c["is_verified"]) for c in categorised["categories"])
    summarised = next(s for s in dataset.sessions if dataset.summaries[s["id"]])
    summary = dataset.summaries[summarised["id"]][0]
    row = conn.execute(
        "SELECT summary_id, text, created_at::text FROM sessions_summaries WHERE session_id = %s AND summary_no = 0",
        (summarised["id"],),
    ).fetchone()
    assert row == (summary["id"], summary["text"], _rounded(summary["created_at"]))


def check_sampled_dictionaries(conn, dictionaries) -> None:
    agent = dictionaries["agents"][0]
    assert conn.execute(
        "SELECT name, phone_number, is_active FROM agents WHERE id = %s", (agent["id"],)
    ).fetchone() == (
        agent["name"],
        agent["phone_number"],
        agent["is_active"],
    )
    link = conn.execute(
        "SELECT group_id, start_dt::text FROM agent_group_associations WHERE agent_id = %s", (agent["id"],)
    )
    assert link.fetchall() == [
        (agent["groups"][0]["group_id"], agent["groups"][0]["start_dt"].replace("T", " "))
    ]
    category = dictionaries["categories"][1]
    row = conn.execute(
        "SELECT filter_data, updated_at::text FROM categories WHERE id = %s", (category["id"],)
    ).fetchone()
    assert row == (category["filter_data"], _rounded(category["updated_at"]))
    point = dictionaries["scorecards"][1]["categories"][0]["points"][0]
    row = conn.execute(
        "SELECT scorecard_id, category_id, description, max_score FROM scorecard_points WHERE id = %s",
        (point["id"],),
    ).fetchone()
    assert row == (
        2,
        dictionaries["scorecards"][1]["categories"][0]["id"],
        point["description"],
        point["max_score"],
    )
    tag = dictionaries["tags"][11]
    row = conn.execute(
        "SELECT name, is_archived, archived_by_id, extra FROM tags WHERE id = %s", (tag["id"],)
    ).fetchone()
    assert row == (tag["name"], True, 1, {})
    user = dictionaries["users"][3]
    row = conn.execute(
        "SELECT email, uuid::text, language FROM users WHERE id = %s", (user["id"],)
    ).fetchone()
    assert row == (user["email"], user["uuid"], user["language"])
    assert conn.execute("SELECT text FROM labels WHERE id = 3").fetchone() == ("label 3",)
    assert conn.execute("SELECT scorecard_id FROM groups WHERE id = 2").fetchone() == (
        dictionaries["groups"][1]["scorecard_id"],
    )


def table_counts(conn) -> dict[str, int]:
    return {
        table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - table names from the code
        for table in expected_counts_tables()
    }


def expected_counts_tables() -> list[str]:
    from etlkit.enderturing.tables import ALL_TABLES

    return [t.name for t in ALL_TABLES]


def snapshot(conn) -> dict[str, list[tuple]]:
    """Every table's rows without etl_loaded_at, sorted."""
    from etlkit.enderturing.tables import ALL_TABLES

    result = {}
    for table in ALL_TABLES:
        cols = ", ".join(f"{c}::text" for c in table.columns)
        result[table.name] = sorted(conn.execute(f"SELECT {cols} FROM {table.name}").fetchall())  # noqa: S608
    return result


def loaded_at(conn, table: str) -> dict:
    return dict(conn.execute(f"SELECT id, etl_loaded_at FROM {table}").fetchall())  # noqa: S608


def xcom(dag_run, task_id: str):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=DAG_ID, run_id=dag_run.run_id, task_id=task_id, key="return_value")
            .one()
        )
        return XComModel.deserialize_value(row)


def test_full_run_loads_exactly_the_generated_data(run_dag, et_airflow, warehouse):
    fake = et_airflow
    dr = run_dag(DAG_ID, logical_date=LOGICAL_DATE)
    assert dr.state == "success", task_states(dr)

    assert table_counts(warehouse) == expected_counts(fake.dataset)
    sample = max(fake.dataset.sessions, key=lambda s: len(s["tags"]) + len(s["reviewers"]))
    row = warehouse.execute(
        "SELECT start_dt, agent_id, duration, overlaps_data, extra, caller_prev_session_id::text "
        "FROM sessions WHERE id = %s",
        (sample["id"],),
    ).fetchone()
    start = datetime.fromisoformat(sample["start_dt"])
    assert abs((row[0] - start.replace(microsecond=0)).total_seconds()) <= 1 and row[0].microsecond == 0
    assert row[1:4] == (sample["agent_id"], sample["duration"], sample["overlaps_data"])
    assert row[4] == {} and row[5] == sample["caller_prev_session_id"]
    tags = warehouse.execute(
        "SELECT tag_id, match_no, transcript_id, matched_query_text FROM sessions_tags "
        "WHERE session_id = %s ORDER BY 1, 2",
        (sample["id"],),
    ).fetchall()
    expected_tags = sorted(
        (tag["id"], n, m.get("transcript_id"), m.get("matched_query_text"))
        for tag in sample["tags"]
        for n, m in enumerate(tag["match"] or [{}])
    )
    assert tags == expected_tags
    statuses = {
        r[0]
        for r in warehouse.execute(
            "SELECT crm_status FROM sessions_crm_statuses WHERE session_id = %s", (sample["id"],)
        )
    }
    assert statuses == {c if isinstance(c, str) else c["crm_status"] for c in sample["crm_statuses"]}
    user0 = warehouse.execute("SELECT full_name, invite_expires::text FROM users WHERE id = 0").fetchone()
    assert user0 == ("Ender Turing", "1900-01-01 00:00:00")
    check_sampled_children(warehouse, fake.dataset)
    check_sampled_dictionaries(warehouse, fake.dataset.dictionaries)

    # Main pass: exactly the two half-day windows of D, encoded once.
    main = [
        e["query"]
        for e in fake.requests_to(r"^/sessions$")
        if "is_scored" not in e["query"] and "categories" not in e["query"]
    ]
    assert all("date_range%2C2024-06-26%2C2024-06-26%7C%7C" in q for q in main)
    assert {q.split("filters=")[1] for q in main} == {
        "date_range%2C2024-06-26%2C2024-06-26%7C%7C00%3A00%2C12%3A00",
        "date_range%2C2024-06-26%2C2024-06-26%7C%7C12%3A01%2C23%3A59",
    }
    # Manual run: re-sync passes ran (62 windows each) and the watermark is the newest updated_at.
    assert len(fake.requests_to(r"^/sessions$")) == 2 + 62 + 62
    newest = max(c["updated_at"] for c in fake.dataset.dictionaries["categories"] if c["updated_at"])
    assert watermark_value() == datetime.fromisoformat(newest).isoformat(timespec="microseconds")
    assert len(fake.requests_to(r"^/login")) == 2  # one per ET task: the token is cached within a task
    # The XComs stay readable JSON: what refresh_dictionaries handed on and what the watermark took.
    refresh = xcom(dr, "refresh_dictionaries")
    assert refresh["changed_category_ids"] == sorted(c["id"] for c in fake.dataset.dictionaries["categories"])
    assert refresh["watermark_candidate"] == watermark_value() == xcom(dr, "advance_category_watermark")
    assert refresh["tables"]["categories"]["inserted"] == expected_counts(fake.dataset)["categories"]


def test_second_run_changes_nothing_and_changed_tags_replace_old_ones(run_dag, et_airflow, warehouse):
    fake = et_airflow
    assert run_dag(DAG_ID, logical_date=LOGICAL_DATE).state == "success"
    before = snapshot(warehouse)
    sessions_loaded_at = loaded_at(warehouse, "sessions")
    agents_loaded_at = loaded_at(warehouse, "agents")

    fake.reset_journal()
    dr = run_dag(DAG_ID, logical_date=LOGICAL_DATE)
    assert dr.state == "success", task_states(dr)
    assert snapshot(warehouse) == before
    assert loaded_at(warehouse, "sessions") == sessions_loaded_at
    assert loaded_at(warehouse, "agents") == agents_loaded_at
    # Nothing changed since the watermark: the second run sends no categories filter.
    assert not [e for e in fake.requests_to(r"^/sessions$") if "categories" in e["query"]]

    changed = next(s for s in fake.dataset.sessions if len(s["tags"]) >= 2)
    changed["tags"] = [
        {"id": 5, "match": [{"transcript_id": 77, "matched_query_text": "new"}] * 2, "new_field": 1}
    ]
    changed["categories"] = [
        {"id": c["id"], "is_verified": not c["is_verified"]} for c in changed["categories"]
    ]
    assert run_dag(DAG_ID, logical_date=LOGICAL_DATE).state == "success"
    rows = warehouse.execute(
        "SELECT tag_id, match_no, transcript_id, matched_query_text, extra FROM sessions_tags "
        "WHERE session_id = %s ORDER BY match_no",
        (changed["id"],),
    ).fetchall()
    assert rows == [
        (5, 0, 77, "new", {"parent": {"new_field": 1}}),
        (5, 1, 77, "new", {"parent": {"new_field": 1}}),
    ]
    verified = warehouse.execute(
        "SELECT category_id, is_verified FROM sessions_categories WHERE session_id = %s ORDER BY 1",
        (changed["id"],),
    ).fetchall()
    assert verified == sorted((c["id"], c["is_verified"]) for c in changed["categories"])
    unrelated = before["sessions_tags"]
    after = snapshot(warehouse)["sessions_tags"]
    assert [r for r in after if r[0] != changed["id"]] == [r for r in unrelated if r[0] != changed["id"]]
