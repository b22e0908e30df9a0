"""Faults on the Celery stack: a worker SIGKILLed (the host vanished) in the middle of a load.

The scheduler notices the lost task by its missing heartbeats (``[scheduler]
task_instance_heartbeat_timeout``, 60 s on the stack), puts it up for retry, and the retry runs on
the worker that is left; the target then holds exactly what a clean run loads.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import psycopg

from dev import pgdb
from dev.stack import ENDERTURING_DAYS, WORKERS
from dev.visits_data import report_lines, write_report

ET_DAG = "enderturing_to_warehouse"


def wait_until_running(stack, dag_id: str, run_id: str, task_id: str, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for ti in stack.task_instances(dag_id, run_id):
            if ti["task_id"] == task_id and ti["state"] == "running" and ti["hostname"]:
                return ti
        time.sleep(0.5)
    raise AssertionError(f"{task_id} of {run_id} never ran: {stack.task_instances(dag_id, run_id)}")


def wait_until_state(
    stack, dag_id: str, run_id: str, task_id: str, state: str, timeout_s: float = 300
) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for ti in stack.task_instances(dag_id, run_id):
            if ti["task_id"] == task_id and ti["state"] == state:
                return ti
        time.sleep(0.5)
    raise AssertionError(f"{task_id} of {run_id} never {state}: {stack.task_instances(dag_id, run_id)}")


def wait_for_dag(stack, dag_id: str, timeout_s: float = 300) -> None:
    """The dag-processor has parsed and serialized the DAG (a fresh stack may not have yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with stack.api() as api:
            if api.get(f"/dags/{dag_id}").status_code == 200:
                return
        assert time.monotonic() < deadline, f"{dag_id} not parsed after {timeout_s} s"
        time.sleep(2)


def unpause_when_parsed(stack, dag_id: str) -> None:
    wait_for_dag(stack, dag_id)
    stack.unpause(dag_id)


def wait_for_no_active_run(stack, dag_id: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while any(r["state"] in ("queued", "running") for r in stack.runs(dag_id)):
        assert time.monotonic() < deadline, stack.runs(dag_id)
        time.sleep(2)


def test_a_worker_killed_during_the_enderturing_load_is_retried_on_the_other(stack, stack_output: Path):
    day = ENDERTURING_DAYS[0]
    expected = sum(1 for s in stack.systems.enderturing.dataset.sessions if s["start_dt"][:10] == str(day))
    wait_for_settled_dag(stack, ET_DAG)
    # Slow summary calls keep sync_sessions busy long enough to lose its worker in the middle.
    stack.systems.enderturing.add_fault(r"/summary$", 120, action="delay", delay_s=1.0)
    run_id = stack.trigger(ET_DAG, {"run_resync": False}, f"{day + timedelta(days=1)}T03:00:00Z")
    running = wait_until_running(stack, ET_DAG, run_id, "sync_sessions")
    victim = running["hostname"]
    time.sleep(3)
    killed_at = time.monotonic()
    stack.stack.kill(victim)
    try:
        run = stack.wait(ET_DAG, run_id)
        recovered_s = time.monotonic() - killed_at
    finally:
        stack.stack.start_worker(victim)
        stack.stack.wait_for_workers(120, (victim,))
    tis = {ti["task_id"]: ti for ti in stack.task_instances(ET_DAG, run_id)}
    sync = tis["sync_sessions"]
    (stack_output / "fault_worker_killed_enderturing.txt").write_text(
        f"killed {victim} while sync_sessions ran (try {running['try_number']}); run {run['state']} "
        f"{recovered_s:.0f} s later; sync_sessions try {sync['try_number']} on {sync['hostname']}\n"
    )
    assert run["state"] == "success", tis
    assert sync["try_number"] == running["try_number"] + 1
    assert sync["hostname"] in set(WORKERS) - {victim}
    with psycopg.connect(pgdb.dsn(stack.layout.database("enderturing"))) as conn:
        loaded = conn.execute(
            "SELECT count(*), count(DISTINCT id) FROM enderturing.sessions WHERE start_dt::date = %s", (day,)
        ).fetchone()
    assert loaded == (expected, expected)


def test_runs_resume_when_redis_returns_after_30_s(stack):
    """The broker down for 30 s: a run triggered meanwhile waits, then completes once Redis is back."""
    dag_id = "movies_postgres_to_elasticsearch"
    wait_for_settled_dag(stack, dag_id)
    stack.stack.stop_service("redis")
    try:
        run_id = stack.trigger(dag_id, {})
        time.sleep(30)
        assert stack.run(dag_id, run_id)["state"] in ("queued", "running")
    finally:
        stack.stack.start_redis()
    run = stack.wait(dag_id, run_id)
    assert run["state"] == "success", stack.task_instances(dag_id, run_id)
    # Workers that exited while the broker was gone come back as under a process supervisor.
    restarted = stack.stack.restart_dead()
    stack.stack.wait_for_workers(120, tuple(name for name in restarted if name in WORKERS))
    print(f"\nafter the Redis outage, restarted: {restarted or 'nothing'}")


def test_a_run_completes_when_the_scheduler_is_killed_and_started_again(stack, stack_output: Path):
    """The scheduler SIGKILLed (no graceful shutdown) while a task of the run is running, then started
    again: the running task reports to the API server meanwhile, and the new scheduler finishes the run."""
    dag_id = "movies_postgres_to_elasticsearch"
    wait_for_settled_dag(stack, dag_id)
    run_id = stack.trigger(dag_id, {})
    deadline = time.monotonic() + 300
    while not any(ti["state"] == "running" for ti in stack.task_instances(dag_id, run_id)):
        assert time.monotonic() < deadline, stack.task_instances(dag_id, run_id)
        time.sleep(0.5)
    running = [ti["task_id"] for ti in stack.task_instances(dag_id, run_id) if ti["state"] == "running"]
    stack.stack.restart("scheduler", signal.SIGKILL)
    run = stack.wait(dag_id, run_id)
    tis = stack.task_instances(dag_id, run_id)
    (stack_output / "fault_scheduler_killed.txt").write_text(
        f"scheduler SIGKILLed while {running} ran; run {run['state']}; "
        + ", ".join(f"{ti['task_id']}={ti['state']} (try {ti['try_number']})" for ti in tis)
        + "\n"
    )
    assert run["state"] == "success", tis
    assert stack.stack.alive("scheduler")


# ---- a worker lost in the middle of a visits load ---------------------------------------------------

VISITS_DAG = "sftp_visits_to_postgres"
LOST_REPORTS = (301, 302, 303)  # loaded in this order; the worker is lost during 302's transaction
LOST_EMAIL_PREFIX, LOST_ROWS, LOST_EMAILS = "lostworker", 400, 60
LOST_REFERENCE = date(2024, 6, 15)


def lost_report_lines(n: int) -> list[str]:
    return list(
        report_lines(LOST_ROWS, seed=n, emails=LOST_EMAILS, email_prefix=LOST_EMAIL_PREFIX, column2="jk")
    )


def _opened(text: str) -> datetime | None:
    return datetime.strptime(text, "%d/%m/%Y %H:%M") if text not in ("", "-") else None


def expected_visits_state(reports: tuple[int, ...], reference: date) -> dict:
    """What a clean run of ``reports`` in ascending <n> loads, from the generator alone: the first
    visit of an e-mail is set by the first file with a visit of it, and never moved by later ones."""
    statistics, errors, first, visits, visits_in = Counter(), {}, {}, defaultdict(list), Counter()
    for n in sorted(reports):
        name, file_visits = f"report_{n}.txt", defaultdict(list)
        errors[name] = 0
        for number, line in enumerate(lost_report_lines(n)[1:], start=1):
            if number % 50 == 0:  # the generator's invalid rows (invalid_every=50)
                errors[name] += 1
                continue
            email, opened = line.split(",")[0], _opened(line.split(",")[5])
            statistics[(name, email, opened)] += 1
            if opened:
                file_visits[email].append(opened)
                visits_in[name] += 1
        for email, opens in file_visits.items():
            first.setdefault(email, min(opens).date())
            visits[email].extend(opens)
    visitors = {
        email: (
            first[email],
            max(opens).date(),
            len(opens),
            sum(o.year == reference.year for o in opens),
            sum((o.year, o.month) == (reference.year, reference.month) for o in opens),
        )
        for email, opens in visits.items()
    }
    load_log = [
        (name, "COMPLETED", LOST_ROWS, LOST_ROWS - errors[name], errors[name], visits_in[name])
        for name in sorted(errors, key=lambda name: int(name[7:-4]))
    ]
    return {"statistics": statistics, "errors": errors, "visitors": visitors, "load_log": load_log}


def loaded_visits_state(stack, names: list[str]) -> dict:
    with psycopg.connect(pgdb.dsn(stack.layout.database("visits"))) as conn:
        statistics = Counter(
            conn.execute(
                "SELECT source_file, email, fecha_open FROM statistics WHERE source_file = ANY(%s)", (names,)
            ).fetchall()
        )
        errors = dict(
            conn.execute(
                "SELECT source_file, count(*) FROM errors WHERE source_file = ANY(%s) GROUP BY 1", (names,)
            ).fetchall()
        )
        visitors = {
            row[0]: tuple(row[1:])
            for row in conn.execute(
                "SELECT email, fechaprimeravisita, fechaultimavisita, visitastotales, visitasanioactual, "
                "visitasmesactual FROM visitor WHERE email LIKE %s",
                (LOST_EMAIL_PREFIX + "%",),
            )
        }
        load_log = conn.execute(
            "SELECT file_name, status, rows_read, rows_loaded, rows_rejected, visits_loaded FROM load_log "
            "WHERE file_name = ANY(%s) ORDER BY load_id",
            (names,),
        ).fetchall()
    return {"statistics": statistics, "errors": errors, "visitors": visitors, "load_log": load_log}


def blocking_email(first: int, second: int) -> str:
    """An e-mail with a visit in report ``second`` that report ``first`` does not hold at all."""
    earlier = {line.split(",")[0] for line in lost_report_lines(first)[1:]}
    for line in lost_report_lines(second)[1:]:
        fields = line.split(",")
        if fields[0].startswith(LOST_EMAIL_PREFIX) and fields[0] not in earlier and _opened(fields[5]):
            return fields[0]
    raise AssertionError(f"report_{second} has no e-mail with a visit that report_{first} lacks")


def wait_for_settled_dag(stack, dag_id: str, timeout_s: float = 300) -> None:
    """Unpaused, its due scheduled run (unpausing starts the latest one) created and every run finished."""
    unpause_when_parsed(stack, dag_id)
    deadline = time.monotonic() + timeout_s
    while True:
        with stack.api() as api:
            next_run = api.get(f"/dags/{dag_id}").json().get("next_dagrun_run_after")
        due = next_run is not None and datetime.fromisoformat(next_run) <= datetime.now(UTC)
        if not due and not any(r["state"] in ("queued", "running") for r in stack.runs(dag_id)):
            return
        assert time.monotonic() < deadline, stack.runs(dag_id)
        time.sleep(2)


def wait_for_lock_wait_on_visitor(dsn: str, run_id: str, stack, timeout_s: float = 300) -> None:
    """A load's transaction waits for the visitor row the test holds (the upsert of report_302)."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query ILIKE '%%visitor%%'"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, stack.task_instances(VISITS_DAG, run_id)
            time.sleep(0.5)


def kept_alert_contexts(stack, dag_id: str, run_id: str) -> dict[str, dict]:
    """The alert contexts the run's tries keep as Variables (etlkit.common.alerting), via REST."""
    prefix, run = f"etlkit_alert_context.{dag_id}.", re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)
    with stack.api() as api:
        response = api.get("/variables", params={"variable_key_pattern": prefix, "limit": 100})
        response.raise_for_status()
        variables = response.json()["variables"]
    return {
        v["key"]: json.loads(v["value"])
        for v in variables
        if v["key"].startswith(prefix) and v["key"].endswith(run)
    }


def wait_for_lost_try_alert(stack, run_id: str, timeout_s: float = 180) -> tuple[list[dict], dict]:
    """The dag-processor's alert of the lost process_files try (it comes some seconds after the
    scheduler failed the try, maybe after the run ended), and the alert contexts still kept then."""
    deadline = time.monotonic() + timeout_s
    while True:
        alerts = [
            a
            for a in etl_alerts([stack.layout.logs, stack.layout.home / "logs"], run_id)
            if a["task_id"] == "process_files" and a["error_type"] == "WorkerLost"
        ]
        kept = kept_alert_contexts(stack, VISITS_DAG, run_id)
        if (alerts and not kept) or time.monotonic() > deadline:
            return alerts, kept
        time.sleep(2)


def task_tries(stack, dag_id: str, run_id: str, task_id: str) -> list[dict]:
    with stack.api() as api:
        response = api.get(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/tries")
        response.raise_for_status()
        return sorted(response.json()["task_instances"], key=lambda ti: ti["try_number"])


def etl_alerts(roots: list[Path], run_id: str) -> list[dict]:
    """Every ``ETL_ALERT`` record of the run in the components' and the task logs."""
    alerts = []
    for root in roots:
        for path in root.rglob("*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if "ETL_ALERT" not in line or run_id not in line:
                    continue
                try:
                    line = json.loads(line).get("event", line)
                except ValueError:
                    pass
                text = line[line.index("ETL_ALERT ") + len("ETL_ALERT ") :]
                alerts.append({**json.loads(text[: text.rindex("}") + 1]), "log": path.name})
    return alerts


def test_a_worker_lost_during_a_visits_load_is_retried_under_the_policy_and_loads_as_a_clean_run(
    stack, stack_output: Path
):
    names = [f"report_{n}.txt" for n in LOST_REPORTS]
    wait_for_settled_dag(stack, VISITS_DAG)
    remote = stack.layout.remote_visits_dir
    for n in LOST_REPORTS:
        path = write_report(
            remote / f"report_{n}.txt",
            LOST_ROWS,
            seed=n,
            emails=LOST_EMAILS,
            email_prefix=LOST_EMAIL_PREFIX,
            column2="jk",
        )
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    expected = expected_visits_state(LOST_REPORTS, LOST_REFERENCE)
    dsn = pgdb.dsn(stack.layout.database("visits"))
    conf = {"reference_date": str(LOST_REFERENCE), "file_pattern": r"^report_30[123]\.txt$"}
    run_id = stack.trigger(VISITS_DAG, conf)
    blocker = psycopg.connect(dsn)  # a concurrent transaction holding one e-mail of report_302
    try:
        wait_until_state(stack, VISITS_DAG, run_id, "ensure_schema", "success")
        blocker.execute(
            "INSERT INTO visitor VALUES (%s, '2000-01-01', '2000-01-01', 1, 0, 0)",
            (blocking_email(LOST_REPORTS[0], LOST_REPORTS[1]),),
        )
        wait_for_lock_wait_on_visitor(dsn, run_id, stack)
        running = wait_until_running(stack, VISITS_DAG, run_id, "process_files")
        kept_while_loading = kept_alert_contexts(stack, VISITS_DAG, run_id)
        with psycopg.connect(dsn) as conn:
            committed = [
                r[0]
                for r in conn.execute("SELECT file_name FROM load_log WHERE file_name = ANY(%s)", (names,))
            ]
        victim = running["hostname"]
        stack.stack.kill(victim)
    finally:
        blocker.rollback()
        blocker.close()
    try:
        run = stack.wait(VISITS_DAG, run_id)
    finally:
        stack.stack.start_worker(victim)
        stack.stack.wait_for_workers(120, (victim,))
    tries = task_tries(stack, VISITS_DAG, run_id, "process_files")
    lost, retry = tries[0], tries[-1]
    waited_s = (
        datetime.fromisoformat(retry["start_date"]) - datetime.fromisoformat(lost["end_date"])
    ).total_seconds()
    alerts, kept_after = wait_for_lost_try_alert(stack, run_id)
    loaded = loaded_visits_state(stack, names)
    (stack_output / "fault_worker_killed_visits.txt").write_text(
        f"killed {victim} during report_302's transaction (committed before: {committed}); run {run['state']}; "
        f"process_files tries: {[(t['try_number'], t['hostname'], t['state']) for t in tries]}; "
        f"retry started {waited_s:.0f} s after the lost try ended (task retry_delay 300 s); "
        f"context kept while loading: {kept_while_loading}; "
        f"lost-worker alerts: {json.dumps(alerts, default=str)}\n"
    )
    assert committed == [names[0]]  # report_301 committed, report_302 in its open transaction
    assert [kept["context"].get("file") for kept in kept_while_loading.values()] == [names[1]]
    assert kept_after == {}  # the retry's removed when it ended, the lost try's by its alerts
    assert run["state"] == "success", stack.task_instances(VISITS_DAG, run_id)
    assert [t["try_number"] for t in tries] == [1, 2]
    assert lost["hostname"] == victim and retry["hostname"] in set(WORKERS) - {victim}
    # The retry came from etl_retry_policy (5 s on the stack), not the task's 300 s with backoff.
    assert waited_s < 300
    [alert] = alerts  # once, though Airflow calls back twice for a lost try
    assert (alert["event"], alert["try_number"], alert["hostname"]) == ("task_up_for_retry", 1, victim)
    assert alert["pipeline_context"] == {"reference_date": str(LOST_REFERENCE), "file": names[1]}
    # Nothing lost, nothing twice: the target equals a clean run of the same files.
    assert loaded["load_log"] == expected["load_log"]
    assert loaded["errors"] == expected["errors"]
    assert loaded["statistics"] == expected["statistics"]
    assert loaded["visitors"] == expected["visitors"]
