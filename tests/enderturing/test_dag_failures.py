"""The DAG under failure: token expiry, 429/500 bursts, a permanent 403, a crash mid-load, and backfill."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from dev.enderturing_server import generate_dataset
from etlkit.common.errors import InjectedFault
from etlkit.enderturing import load
from tests.conftest import task_states
from tests.enderturing.conftest import LOGICAL_DATE, watermark_value
from tests.enderturing.test_dag_end_to_end import DAG_ID, expected_counts, snapshot, table_counts

pytestmark = pytest.mark.enderturing
SHORT_RESYNC = {"resync_lookback_days": 1}


def session_counts(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if k.startswith("sessions")}


def test_token_expiry_and_429_500_bursts_mid_run_are_survived(run_dag, et_airflow, warehouse):
    fake = et_airflow
    fake.revoke_tokens_at_request = 30  # in the middle of the per-session calls
    fake.add_fault(r"^/sessions$", 1, status=429, headers={"Retry-After": "1"})
    fake.add_fault(r"/summary$", 3, status=500)
    fake.add_fault(r"^/agents$", 2, status=502)
    dr = run_dag(DAG_ID, conf=SHORT_RESYNC, logical_date=LOGICAL_DATE)
    assert dr.state == "success", task_states(dr)
    assert session_counts(table_counts(warehouse)) == session_counts(expected_counts(fake.dataset))
    statuses = [e["status"] for e in fake.journal]
    assert statuses.count(401) >= 1 and statuses.count(429) == 1 and statuses.count(500) == 3
    # One login per ET task plus exactly one re-login after the revocation.
    assert len(fake.requests_to("^/login")) == 3


def test_permanent_403_fails_fast_without_retries(run_dag, et_airflow, warehouse):
    fake = et_airflow
    fake.add_fault(r"^/sessions$", 100, status=403, body={"detail": "tenant disabled"})
    dr = run_dag(DAG_ID, conf=SHORT_RESYNC, logical_date=LOGICAL_DATE)
    assert dr.state == "failed"
    states = task_states(dr)
    assert states["sync_sessions"] == "failed" and states["advance_category_watermark"] == "upstream_failed"
    assert len(fake.requests_to(r"^/sessions$")) == 1
    assert warehouse.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0
    assert watermark_value() is None


def test_crash_mid_load_leaves_warehouse_and_watermark_then_rerun_completes(
    run_dag, et_airflow, warehouse, monkeypatch
):
    fake = et_airflow
    assert run_dag(DAG_ID, conf=SHORT_RESYNC, logical_date=LOGICAL_DATE).state == "success"
    before, mark_before = snapshot(warehouse), watermark_value()
    assert mark_before is not None

    # Upstream changes that the next run would load and that would move the watermark.
    changed = next(s for s in fake.dataset.sessions if s["tags"])
    changed["tags"] = [{"id": 3, "match": [{"transcript_id": 1}]}]
    fake.dataset.sessions.extend(generate_dataset([date(2024, 6, 26)], 5, seed=99).sessions)
    fake.dataset.dictionaries["categories"][2]["updated_at"] = "2024-06-30T00:00:00.000001"

    real_upsert = load._upsert

    def crashing_upsert(conn, table, *args):
        if table.name == "sessions_tags":
            raise InjectedFault("crash injected while loading sessions_tags")
        return real_upsert(conn, table, *args)

    monkeypatch.setattr(load, "_upsert", crashing_upsert)
    dr = run_dag(DAG_ID, conf=SHORT_RESYNC, logical_date=LOGICAL_DATE)
    assert dr.state == "failed"
    assert task_states(dr)["sync_sessions"] == "failed"
    after_crash = snapshot(warehouse)
    session_tables = [name for name in before if name.startswith("sessions")]
    assert {n: after_crash[n] for n in session_tables} == {n: before[n] for n in session_tables}
    assert watermark_value() == mark_before

    monkeypatch.setattr(load, "_upsert", real_upsert)
    dr = run_dag(DAG_ID, conf=SHORT_RESYNC, logical_date=LOGICAL_DATE)
    assert dr.state == "success", task_states(dr)
    assert table_counts(warehouse) == expected_counts(fake.dataset)
    tags = warehouse.execute(
        "SELECT tag_id, transcript_id FROM sessions_tags WHERE session_id = %s", (changed["id"],)
    )
    assert tags.fetchall() == [(3, 1)]
    assert watermark_value() == "2024-06-30T00:00:00.000001"


def test_backfill_of_three_days_loads_exactly_those_days(run_dag, et_airflow, warehouse):
    fake = et_airflow
    days = [date(2024, 6, 23) + timedelta(days=n) for n in range(5)]
    fake.dataset = generate_dataset(days, 15, seed=5)
    backfilled = days[1:4]
    for day in backfilled:
        fake.reset_journal()
        logical = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        dr = run_dag(DAG_ID, conf={"run_resync": False}, logical_date=logical)
        assert dr.state == "success", task_states(dr)
        listed = {
            e["query"].split("filters=")[1].split("%7C%7C")[0] for e in fake.requests_to(r"^/sessions$")
        }
        assert listed == {f"date_range%2C{day}%2C{day}"}
    loaded = {r[0] for r in warehouse.execute("SELECT start_dt::date FROM sessions")}
    assert loaded == set(backfilled)
    expected = {
        s["id"] for s in fake.dataset.sessions if date.fromisoformat(s["start_dt"][:10]) in backfilled
    }
    assert {str(r[0]) for r in warehouse.execute("SELECT id FROM sessions")} == expected
    assert watermark_value() is None  # runs without re-sync never move the watermark


def test_limit_sessions_takes_few_sessions_and_freezes_the_watermark(run_dag, et_airflow, warehouse):
    fake = et_airflow
    dr = run_dag(DAG_ID, conf={"limit_sessions": 5, **SHORT_RESYNC}, logical_date=LOGICAL_DATE)
    assert dr.state == "success", task_states(dr)
    listings = fake.requests_to(r"^/sessions$")
    assert listings and all("limit=5&" in e["query"] for e in listings)
    loaded = warehouse.execute("SELECT count(*) FROM sessions").fetchone()[0]
    assert 5 <= loaded <= 5 * 3  # main, manual scores, one categories pass: at most 5 each
    assert watermark_value() is None


def test_dag_settings_of_the_spec_two_retries_no_catchup_one_run_at_a_time(dag_bag):
    from etlkit.common.retry_policy import PipelineRetryPolicy

    dag = dag_bag.get_dag(DAG_ID)
    assert (dag.catchup, dag.max_active_runs) == (False, 1)
    for task in dag.tasks:
        assert task.retries == 2, task.task_id
        assert isinstance(task.retry_policy, PipelineRetryPolicy), task.task_id
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"  # a real interval: backfill works


@pytest.mark.parametrize(
    ("interval_start", "clock", "day"),
    [
        (datetime(2024, 6, 26, 0, 0, tzinfo=UTC), "UTC", date(2024, 6, 26)),
        # A tenant on Tallinn time: its day 26 starts at 21:00 UTC on the 25th.
        (datetime(2024, 6, 25, 21, 0, tzinfo=UTC), "Europe/Tallinn", date(2024, 6, 26)),
    ],
)
def test_day_d_is_the_interval_start_on_the_et_clock(interval_start, clock, day):
    from etlkit.enderturing.run import day_of_interval

    assert day_of_interval(interval_start, clock) == day


@pytest.mark.parametrize(
    ("run_after", "clock", "day"),
    [
        (datetime(2024, 6, 27, 0, 30, tzinfo=UTC), "UTC", date(2024, 6, 26)),
        (datetime(2024, 6, 26, 22, 30, tzinfo=UTC), "Europe/Tallinn", date(2024, 6, 26)),  # 01:30 on the 27th
    ],
)
def test_a_run_triggered_without_a_logical_date_takes_the_last_complete_day(run_after, clock, day):
    """`airflow dags trigger` without -l: Airflow 3 gives such a run no data interval at all."""
    from types import SimpleNamespace

    from etlkit.enderturing.run import day_of_run

    assert day_of_run({"dag_run": SimpleNamespace(run_after=run_after)}, clock) == day
    interval_start = datetime(2024, 6, 20, tzinfo=UTC)
    assert day_of_run({"data_interval_start": interval_start, "dag_run": None}, clock) == date(2024, 6, 20)


@pytest.mark.parametrize(
    ("run_type", "resync_passes"), [("backfill", False), ("scheduled", True), ("manual", True)]
)
def test_a_backfill_run_skips_the_resync_passes_and_leaves_the_watermark(
    run_dag, et_airflow, warehouse, monkeypatch, run_type, resync_passes
):
    """dag.test() makes manual runs only: the run type the operators read is the one of the case."""
    from etlkit.enderturing import run

    fake = et_airflow
    monkeypatch.setattr(run, "run_type_of", lambda context: run_type)

    dr = run_dag(DAG_ID, conf=SHORT_RESYNC, logical_date=LOGICAL_DATE)  # run_resync left at true

    assert dr.state == "success", task_states(dr)
    filters = [e["query"].split("filters=")[1] for e in fake.requests_to(r"^/sessions$")]
    assert any("is_scored" in f for f in filters) is resync_passes
    assert (watermark_value() is not None) is resync_passes


def test_a_persistently_failing_summary_call_fails_the_run_with_nothing_loaded(
    run_dag, et_airflow, warehouse
):
    fake = et_airflow
    victim = fake.dataset.sessions[3]["id"]
    fake.add_fault(rf"^/sessions/{victim}/summary$", 1000, status=500)

    dr = run_dag(DAG_ID, conf=SHORT_RESYNC, logical_date=LOGICAL_DATE)

    assert dr.state == "failed"
    assert task_states(dr)["sync_sessions"] == "failed"
    assert len(fake.requests_to(rf"^/sessions/{victim}/summary$")) == 4  # the hook's attempts, then fail
    counts = session_counts(table_counts(warehouse))
    assert len(counts) == 8 and set(counts.values()) == {0}  # the eight session tables, all empty
    assert watermark_value() is None


def test_comments_are_fetched_when_asked_and_replaced_on_the_next_run(run_dag, et_airflow, warehouse):
    fake = et_airflow
    commented = [s for s in fake.dataset.sessions if s["start_dt"].startswith("2024-06-26")][:3]
    for n, session in enumerate(commented):
        session["comments_count"] = 2
        fake.dataset.comments[session["id"]] = [
            {"id": 10 * n + 1, "author_id": 1, "text": f"first on {n}", "comments": []},
            {"id": 10 * n + 2, "author_id": 2, "text": "a reply\tafter a tab", "comments": [{"id": 99}]},
        ]
    conf = {**SHORT_RESYNC, "fetch_comments": True}

    assert run_dag(DAG_ID, conf=conf, logical_date=LOGICAL_DATE).state == "success"

    asked = {e["path"].split("/")[2] for e in fake.requests_to("/comments$")}
    assert asked == {s["id"] for s in commented}  # sessions whose count says 0 are not asked
    rows = warehouse.execute(
        "SELECT session_id::text, comment_no, comment_id, author_id, text FROM sessions_comments ORDER BY 1, 2"
    ).fetchall()
    assert len(rows) == 6
    first = commented[0]["id"]
    assert [r[1:] for r in rows if r[0] == first] == [
        (0, 1, 1, "first on 0"),
        (1, 2, 2, "a reply\tafter a tab"),
    ]

    fake.dataset.comments[first] = fake.dataset.comments[first][:1]  # a comment deleted upstream
    assert run_dag(DAG_ID, conf=conf, logical_date=LOGICAL_DATE).state == "success"
    assert warehouse.execute("SELECT count(*) FROM sessions_comments").fetchone()[0] == 5
    remaining = warehouse.execute(
        "SELECT comment_no, text FROM sessions_comments WHERE session_id = %s", [first]
    ).fetchall()
    assert remaining == [(0, "first on 0")]


def test_children_removed_upstream_are_deleted_and_an_absent_tags_key_keeps_the_tags(
    run_dag, et_airflow, warehouse
):
    fake = et_airflow
    day_sessions = [s for s in fake.dataset.sessions if s["start_dt"].startswith("2024-06-26")]
    changed, untouched = day_sessions[0], day_sessions[1]
    match = {
        "score": 0.5,
        "matched_corpus_text": "x",
        "is_agent": True,
        "transcript_id": 7,
        "matched_query_text": "q",
    }
    changed["categories"] = [{"id": 1, "is_verified": False}, {"id": 2, "is_verified": True}]
    changed["reviewers"] = [
        {"id": 3, "last_reviewed_at": "2024-06-27T10:00:00"},
        {"id": 4, "last_reviewed_at": "2024-06-27T11:00:00"},
    ]
    changed["tags"] = [{"id": 5, "match": [match, {**match, "score": 0.9}]}]
    untouched["tags"] = [{"id": 6, "match": [match]}]
    assert run_dag(DAG_ID, conf=SHORT_RESYNC, logical_date=LOGICAL_DATE).state == "success"

    changed["categories"] = [{"id": 1, "is_verified": True}]  # one removed, one switched in place
    changed["reviewers"] = changed["reviewers"][:1]
    changed["tags"] = [{"id": 5, "match": [match]}]  # the second match is gone
    del untouched["tags"]  # the API left the key out: nothing to say about its tags
    assert run_dag(DAG_ID, conf=SHORT_RESYNC, logical_date=LOGICAL_DATE).state == "success"

    def rows(sql: str, session: dict) -> list[tuple]:
        return warehouse.execute(sql, [session["id"]]).fetchall()

    assert rows(
        "SELECT category_id, is_verified FROM sessions_categories WHERE session_id = %s", changed
    ) == [(1, True)]
    assert rows("SELECT reviewer_id FROM sessions_reviewers WHERE session_id = %s", changed) == [(3,)]
    assert rows("SELECT tag_id, match_no, score FROM sessions_tags WHERE session_id = %s", changed) == [
        (5, 0, 0.5)
    ]
    assert rows("SELECT tag_id, match_no FROM sessions_tags WHERE session_id = %s", untouched) == [(6, 0)]


def test_a_warehouse_connection_that_is_not_postgres_fails_before_any_api_call(
    run_dag, et_airflow, warehouse, airflow_conn
):
    fake = et_airflow
    airflow_conn("enderturing_warehouse", {"conn_type": "mysql", "host": "127.0.0.1", "login": "etl"})

    dr = run_dag(DAG_ID, conf=SHORT_RESYNC, logical_date=LOGICAL_DATE)

    assert dr.state == "failed"
    assert task_states(dr)["ensure_schema"] == "failed"
    assert fake.journal == []  # not even a login
