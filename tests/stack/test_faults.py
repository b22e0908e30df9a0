"""Faults on the Celery stack: a worker SIGKILLed (the host vanished) in the middle of a load.

The scheduler notices the lost task by its missing heartbeats (``[scheduler]
task_instance_heartbeat_timeout``, 60 s on the stack), puts it up for retry, and the retry runs on
the worker that is left; the target then holds exactly what a clean run loads.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import psycopg

from dev import pgdb
from dev.stack import ENDERTURING_DAYS, WORKERS

ET_DAG = "enderturing_to_warehouse"


def wait_until_running(stack, dag_id: str, run_id: str, task_id: str, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for ti in stack.task_instances(dag_id, run_id):
            if ti["task_id"] == task_id and ti["state"] == "running" and ti["hostname"]:
                return ti
        time.sleep(0.5)
    raise AssertionError(f"{task_id} of {run_id} never ran: {stack.task_instances(dag_id, run_id)}")


def wait_for_no_active_run(stack, dag_id: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while any(r["state"] in ("queued", "running") for r in stack.runs(dag_id)):
        assert time.monotonic() < deadline, stack.runs(dag_id)
        time.sleep(2)


def test_a_worker_killed_during_the_enderturing_load_is_retried_on_the_other(stack, stack_output: Path):
    day = ENDERTURING_DAYS[0]
    expected = sum(1 for s in stack.systems.enderturing.dataset.sessions if s["start_dt"][:10] == str(day))
    stack.unpause(ET_DAG)
    wait_for_no_active_run(stack, ET_DAG)
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
    stack.unpause(dag_id)
    wait_for_no_active_run(stack, dag_id)
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
