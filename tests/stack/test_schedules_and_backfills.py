"""Runs the scheduler makes on its own on the Celery stack: a scheduled visits run on a near cron, and
Ender Turing backfills created through REST API v2 and through the ``airflow`` CLI.

Airflow 3.3 counts a backfill's runs apart from the DAG's ``max_active_runs``: the backfill has its
own limit (10 by default, in REST and CLI alike), and scheduled or manual runs go on beside it.
``enderturing_to_warehouse`` therefore gives ``sync_sessions`` ``max_active_tis_per_dag=1``: whatever
the runs, one day at a time is extracted and loaded (README, Runbook, Backfill).
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from dev import pgdb
from dev.stack import ENDERTURING_BACKFILL_DAYS
from tests.stack.conftest import VISITS_SCHEDULE, task_log

ET_DAG = "enderturing_to_warehouse"
VISITS_DAG = "sftp_visits_to_postgres"
ACTIVE = ("queued", "running")
BACKFILL_DAYS = ENDERTURING_BACKFILL_DAYS[:3]
BUSY_DAY = ENDERTURING_BACKFILL_DAYS[3]  # a manual run's day, loading while the backfill starts


# ---- driving the stack ------------------------------------------------------------------------------


def all_runs(stack, dag_id: str) -> list[dict]:
    with stack.api() as api:
        response = api.get(f"/dags/{dag_id}/dagRuns", params={"order_by": "id", "limit": 100})
        response.raise_for_status()
        return response.json()["dag_runs"]


def wait_for_no_active_run(stack, dag_id: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while active := [r["dag_run_id"] for r in all_runs(stack, dag_id) if r["state"] in ACTIVE]:
        assert time.monotonic() < deadline, f"{dag_id} still has active runs {active}"
        time.sleep(2)


def dag_details(stack, dag_id: str, timeout_s: float = 180) -> dict:
    """The DAG as the API shows it, once the dag-processor has parsed it (a fresh stack has not yet)."""
    deadline = time.monotonic() + timeout_s
    with stack.api() as api:
        while (response := api.get(f"/dags/{dag_id}")).status_code == 404 and time.monotonic() < deadline:
            time.sleep(2)
        response.raise_for_status()
        return response.json()


def set_paused(stack, dag_id: str, paused: bool) -> None:
    dag_details(stack, dag_id)
    with stack.api() as api:
        api.patch(f"/dags/{dag_id}", json={"is_paused": paused}).raise_for_status()


def restart_dag_processor(stack, env: dict[str, str], dag_id: str, timetable: str) -> None:
    """The deployment's environment changed and its dag-processor restarted, as an operator does it."""
    stack.stack.service_env["dag-processor"] = env
    stack.stack.kill("dag-processor")  # it keeps no state: no need to wait for a graceful exit
    stack.stack.start_service("dag-processor")
    deadline = time.monotonic() + 240
    while dag_details(stack, dag_id)["timetable_summary"] != timetable:
        assert time.monotonic() < deadline, f"{dag_id} was not re-parsed with {timetable}"
        time.sleep(2)


def create_backfill_via_rest(stack, first: date, last: date, **options) -> dict:
    body = {"dag_id": ET_DAG, "from_date": f"{first}T00:00:00Z", "to_date": f"{last}T00:00:00Z", **options}
    with stack.api() as api:
        response = api.post("/backfills", json=body)
        assert response.status_code == 200, response.text
        return response.json()


def airflow_cli(stack, *args: str) -> subprocess.CompletedProcess:
    """The ``airflow`` CLI with the stack's environment, as on a host of the deployment."""
    return subprocess.run(
        stack.stack.airflow(*args),
        env=stack.stack.environment("cli"),
        capture_output=True,
        text=True,
        timeout=300,
    )


def latest_backfill(stack) -> dict:
    with stack.api() as api:
        response = api.get("/backfills", params={"dag_id": ET_DAG, "limit": 100})
        response.raise_for_status()
        return max(response.json()["backfills"], key=lambda backfill: backfill["id"])


def wait_for_backfill(stack, backfill_id: int, days: tuple[date, ...], timeout_s: float = 600) -> list[dict]:
    """The backfill completed and the runs of its days (their logical dates) finished."""
    deadline = time.monotonic() + timeout_s
    while True:
        with stack.api() as api:
            backfill = api.get(f"/backfills/{backfill_id}").json()
        runs = day_runs(stack, days)
        if (
            backfill["completed_at"]
            and len(runs) == len(days)
            and all(r["state"] not in ACTIVE for r in runs)
        ):
            return runs
        assert time.monotonic() < deadline, f"backfill {backfill}: runs {runs}"
        time.sleep(3)


def day_runs(stack, days) -> list[dict]:
    """The run of each day D (logical date D 00:00, the DAG's daily interval)."""
    wanted = {f"{day}T00:00:00Z" for day in days}
    return sorted(
        (r for r in all_runs(stack, ET_DAG) if r["logical_date"] in wanted), key=lambda r: r["logical_date"]
    )


def task_instance(stack, dag_id: str, run_id: str, task_id: str) -> dict:
    [ti] = [ti for ti in stack.task_instances(dag_id, run_id) if ti["task_id"] == task_id]
    return ti


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_one_at_a_time(spans: list[tuple[str, str, str]]) -> None:
    """(name, start, end) spans, none overlapping another."""
    ordered = sorted(spans, key=lambda span: at(span[1]))
    for before, after in zip(ordered, ordered[1:], strict=False):
        assert at(after[1]) >= at(before[2]), f"{after[0]} started before {before[0]} ended: {ordered}"


# ---- the warehouse ----------------------------------------------------------------------------------


def expected_session_ids(stack, day: date) -> set[str]:
    return {s["id"] for s in stack.systems.enderturing.dataset.sessions if s["start_dt"][:10] == str(day)}


def loaded_session_ids(stack, day: date | None = None) -> set[str]:
    query = "SELECT id::text FROM enderturing.sessions"
    params: tuple = ()
    if day:
        query, params = query + " WHERE start_dt::date = %s", (day,)
    with psycopg.connect(pgdb.dsn(stack.layout.database("enderturing"))) as conn:
        if conn.execute("SELECT to_regclass('enderturing.sessions')").fetchone()[0] is None:
            return set()  # no run has created the schema yet
        return {row[0] for row in conn.execute(query, params)}


def warehouse_fingerprint(stack) -> dict[str, tuple[int, str]]:
    """Every table of the warehouse schema: row count and a digest of every row, markers included."""
    with psycopg.connect(pgdb.dsn(stack.layout.database("enderturing"))) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'enderturing' AND table_type = 'BASE TABLE' ORDER BY 1"
            )
        ]
        fingerprint = {}
        for table in tables:
            query = sql.SQL(
                "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {} t"
            ).format(sql.Identifier("enderturing", table))
            fingerprint[table] = tuple(conn.execute(query).fetchone())
    return fingerprint


# ---- the tests --------------------------------------------------------------------------------------


def test_the_scheduler_starts_a_visits_run_on_its_near_cron_with_r_its_trigger_date(stack):
    """Item 2: a near cron given by env to the dag-processor only for this test, then the daily one again.

    Not the session's ``ETLKIT_STACK_NEAR_CRON`` (every 4 minutes): once another test unpaused the
    DAG, its runs would take the files that test places. An hourly cron at the minute that has just
    begun has one due tick, which unpausing runs at once (catchup=False), and no other for an hour.
    """
    was_paused = dag_details(stack, VISITS_DAG)["is_paused"]
    wait_for_no_active_run(stack, VISITS_DAG)
    known = {r["dag_run_id"] for r in all_runs(stack, VISITS_DAG)}
    tick = datetime.now(UTC).replace(second=0, microsecond=0)
    near_cron = f"{tick.minute} * * * *"
    try:
        restart_dag_processor(stack, {"SFTP_VISITS_SCHEDULE": near_cron}, VISITS_DAG, near_cron)
        set_paused(stack, VISITS_DAG, False)
        deadline = time.monotonic() + 300
        while not (new := [r for r in all_runs(stack, VISITS_DAG) if r["dag_run_id"] not in known]):
            assert time.monotonic() < deadline, "the scheduler made no run on the near cron"
            time.sleep(2)
        run = stack.wait(VISITS_DAG, new[0]["dag_run_id"])
    finally:
        restart_dag_processor(stack, {}, VISITS_DAG, VISITS_SCHEDULE)
        wait_for_no_active_run(stack, VISITS_DAG)
        set_paused(stack, VISITS_DAG, was_paused)

    run_id, trigger = run["dag_run_id"], at(run["run_after"])
    assert (run["run_type"], run["triggered_by"], run["state"]) == ("scheduled", "timetable", "success"), run
    # The schedule's dates: the cron's tick, the one-day interval ending there, logical date its start.
    assert trigger == tick, run
    assert at(run["data_interval_end"]) == trigger
    assert at(run["data_interval_start"]) == trigger - timedelta(days=1)
    assert at(run["logical_date"]) == trigger - timedelta(days=1)
    assert at(run["queued_at"]) >= trigger
    # R is the trigger date (in the DAG's timezone, UTC on the stack), as for a manual run, not the
    # logical date (the day before).
    r = trigger.astimezone(UTC).date()
    refresh = task_instance(stack, VISITS_DAG, run_id, "refresh_period_counters")
    log = task_log(stack, VISITS_DAG, run_id, "refresh_period_counters", refresh["try_number"])
    assert any(f"period counters refreshed for R={r}:" in line for line in log), log
    with psycopg.connect(pgdb.dsn(stack.layout.database("visits"))) as conn:
        loads = conn.execute(
            "SELECT DISTINCT reference_date FROM load_log WHERE dag_run_id = %s", (run_id,)
        ).fetchall()
    assert loads in ([], [(r,)])  # the files it found, if any, were loaded with the same R


def test_backfills_via_rest_and_cli_load_exactly_their_days_one_at_a_time_and_a_rerun_changes_nothing(
    stack, stack_output
):
    """Items 3 and 8: a REST backfill of three days with Airflow's default max_active_runs, created
    while a manual run loads (the issue's case), then ``airflow backfill create --reprocess-behavior
    completed --max-active-runs 1`` over the same days."""
    wait_for_no_active_run(stack, ET_DAG)
    before = loaded_session_ids(stack)
    expected = set().union(*(expected_session_ids(stack, day) for day in (*BACKFILL_DAYS, BUSY_DAY)))
    assert not before & expected

    fake = stack.systems.enderturing
    # Slow summaries keep the manual run's sync_sessions busy while the backfill's runs start.
    fake.add_fault(r"/summary$", 60, action="delay", delay_s=1.0)
    slow_summaries = fake.faults[-1]
    try:
        # Triggered before unpausing: ahead of the scheduled run unpausing may start (README).
        manual_id = stack.trigger(ET_DAG, {"run_resync": False}, f"{BUSY_DAY + timedelta(days=1)}T03:00:00Z")
        set_paused(stack, ET_DAG, False)
        wait_until_running(stack, ET_DAG, manual_id, "sync_sessions")
        backfill = create_backfill_via_rest(stack, BACKFILL_DAYS[0], BACKFILL_DAYS[-1])
        runs = wait_for_backfill(stack, backfill["id"], BACKFILL_DAYS)
        manual = stack.wait(ET_DAG, manual_id)
    finally:
        slow_summaries.remaining = 0
    assert backfill["max_active_runs"] == 10  # Airflow's default, not the DAG's 1
    assert [(r["run_type"], r["state"]) for r in runs] == [("backfill", "success")] * 3, runs
    assert manual["state"] == "success", manual
    assert [at(r["data_interval_start"]).date() for r in runs] == list(BACKFILL_DAYS)
    # Airflow starts the backfill's runs beside the active manual run (README says so) ...
    assert any(at(r["start_date"]) < at(manual["end_date"]) for r in runs), (manual, runs)
    # ... and the scheduler still extracts and loads one day at a time (max_active_tis_per_dag=1).
    syncs = [task_instance(stack, ET_DAG, r["dag_run_id"], "sync_sessions") for r in (manual, *runs)]
    sync_spans = [(ti["dag_run_id"], ti["start_date"], ti["end_date"]) for ti in syncs]
    assert_one_at_a_time(sync_spans)
    for day in (*BACKFILL_DAYS, BUSY_DAY):
        assert loaded_session_ids(stack, day) == expected_session_ids(stack, day) != set(), day
    assert loaded_session_ids(stack) - before == expected  # exactly those days
    loaded = warehouse_fingerprint(stack)
    first_end = max(at(r["end_date"]) for r in runs)

    started = time.monotonic()
    cli = airflow_cli(
        stack,
        *("backfill", "create", "--dag-id", ET_DAG),
        *("--from-date", str(BACKFILL_DAYS[0]), "--to-date", str(BACKFILL_DAYS[-1])),
        *("--reprocess-behavior", "completed", "--max-active-runs", "1"),
    )
    cli_s = time.monotonic() - started
    assert cli.returncode == 0, cli.stderr[-3000:]
    rerun = latest_backfill(stack)
    assert rerun["id"] != backfill["id"] and rerun["reprocess_behavior"] == "completed"
    reruns = wait_for_backfill(stack, rerun["id"], BACKFILL_DAYS)
    # The same runs, run again by the scheduler after the first backfill, one after another ...
    assert [r["dag_run_id"] for r in reruns] == [r["dag_run_id"] for r in runs]
    assert all(r["state"] == "success" and at(r["start_date"]) > first_end for r in reruns), reruns
    assert_one_at_a_time([(r["dag_run_id"], r["start_date"], r["end_date"]) for r in reruns])
    # ... and the warehouse is the same, row for row, etl_loaded_at included.
    assert warehouse_fingerprint(stack) == loaded
    (stack_output / "backfills.txt").write_text(
        f"manual run {manual_id}: {manual['start_date']}..{manual['end_date']}\n"
        + "".join(
            f"{r['dag_run_id']}: REST {a['start_date']}..{a['end_date']}, CLI rerun {r['start_date']}..{r['end_date']}\n"
            for a, r in zip(runs, reruns, strict=True)
        )
        + "".join(f"sync_sessions of {name}: {start}..{end}\n" for name, start, end in sync_spans)
        + f"airflow backfill create (CLI) took {cli_s:.0f} s\n"
    )


@pytest.mark.parametrize("dag_id", [VISITS_DAG, "sierra_signum_item_sync"])
def test_dags_whose_runs_take_what_the_source_holds_now_refuse_backfills(stack, dag_id):
    """Item 8: a backfill of visits or Sierra would start the same run for every day at once."""
    assert dag_details(stack, dag_id)["is_backfillable"] is False  # the UI offers no backfill
    with stack.api() as api:
        response = api.post(
            "/backfills",
            json={"dag_id": dag_id, "from_date": "2026-11-01T00:00:00Z", "to_date": "2026-11-03T00:00:00Z"},
        )
    assert response.status_code == 400, response.text
    assert "does not allow backfill runs" in response.json()["detail"]
    assert not [r for r in all_runs(stack, dag_id) if r["run_type"] == "backfill"]


def wait_until_running(stack, dag_id: str, run_id: str, task_id: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while task_instance(stack, dag_id, run_id, task_id)["state"] != "running":
        assert time.monotonic() < deadline, stack.task_instances(dag_id, run_id)
        time.sleep(0.5)
