"""Ordering and shared state across the two Celery workers (issue 14, item 7), driven through REST.

* Visit files load in ascending ``<n>`` whichever worker runs ``process_files``; a file the
  warehouse refuses fails the run and holds back the later ones until it is fixed (the failed
  task cleared: the run resumes at it) or given up on with a reason (param ``give_up_files``).
* The Ender Turing DAG on two workers sharing no disk loads what one ``dag.test()`` run loads, and
  no session id, phone number or e-mail of its dataset stays on any worker's disk or the shared one.
* A declarative job whose consecutive components run on different workers reads its upstream's
  output through the declared shared staging root.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from celery import Celery

from dev import jobs_data, pgdb
from dev.stack import ENDERTURING_DAYS, JOBS_DAY, WORKERS
from etlkit.visits.process import open_store
from etlkit.visits.settings import VisitsSettings
from tests.stack.reference import (
    enderturing_logical_date,
    enderturing_state,
    reference,  # noqa: F401 - the fixture
)
from tests.visits.test_metrics_and_recovery import opened, report

VISITS_DAG = "sftp_visits_to_postgres"
ET_DAG = "enderturing_to_warehouse"
JOB_DAG = "orders_daily_load"


# ---- driving the stack ------------------------------------------------------------------------


def wait_for_no_active_run(stack, dag_id: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while any(run["state"] in ("queued", "running") for run in stack.runs(dag_id)):
        assert time.monotonic() < deadline, stack.runs(dag_id)
        time.sleep(2)


def unpause_and_settle(stack, dag_id: str, timeout_s: float = 300) -> None:
    """Unpause, let the scheduler make the latest due run it makes on unpausing, and let every run end."""
    stack.unpause(dag_id)
    deadline = time.monotonic() + timeout_s
    while not any(run["run_type"] == "scheduled" for run in stack.runs(dag_id)):
        assert time.monotonic() < deadline, f"no scheduled run of {dag_id} after unpausing"
        time.sleep(2)
    wait_for_no_active_run(stack, dag_id, timeout_s)


def xcom(stack, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
    with stack.api() as api:
        response = api.get(
            f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{key}"
        )
        response.raise_for_status()
        value = response.json()["value"]
    return json.loads(value) if isinstance(value, str) else value  # the raw value as stored


def clear_failed(stack, dag_id: str, run_id: str) -> None:
    """What "Clear → only failed" in the UI does: the run's failed tasks run again."""
    with stack.api() as api:
        response = api.post(
            f"/dags/{dag_id}/clearTaskInstances",
            json={"dag_run_id": run_id, "only_failed": True, "reset_dag_runs": True, "dry_run": False},
        )
        assert response.status_code == 200, response.text


def task(stack, dag_id: str, run_id: str, task_id: str) -> dict:
    return next(ti for ti in stack.task_instances(dag_id, run_id) if ti["task_id"] == task_id)


def wait_for_try(stack, dag_id: str, run_id: str, task_id: str, try_number: int, timeout_s=300) -> dict:
    deadline = time.monotonic() + timeout_s
    while (ti := task(stack, dag_id, run_id, task_id))["try_number"] < try_number:
        assert time.monotonic() < deadline, ti
        time.sleep(1)
    return ti


# ---- 7a: visit files in ascending <n>, held back by a failed file ----------------------------------


def email(name: str) -> str:
    return f"{name}.d7@ordering.example.com"


REFUSED = email("refused")  # the warehouse refuses this visitor (a trigger installed by the test)
REPORTS = {
    901: [("a", "20/05/2024"), ("b", "02/05/2024")],
    902: [("a", "10/05/2024"), ("c", "15/05/2024")],
    903: [("b", "01/05/2024"), ("c", "05/05/2024")],
    904: [("d", "07/05/2024")],
    905: [("d", "03/05/2024"), ("a", "25/05/2024")],
}
BAD = (902, 904)  # delivered with the refused row
PATTERN = r"^report_90[1-5]\.txt$"
REASON = "the warehouse refuses a visitor in it; the sender resends it corrected"
# An e-mail's first visit is set when its visitor row is inserted: by the first file loaded that
# has it, in ascending <n> (902 fixed, 904 given up): (first visit, last visit, total visits).
EXPECTED_VISITORS = {
    email("a"): ("2024-05-20", "2024-05-25", 3),
    email("b"): ("2024-05-02", "2024-05-02", 2),
    email("c"): ("2024-05-15", "2024-05-15", 2),
    email("d"): ("2024-05-03", "2024-05-03", 1),
}


def put_report(remote: Path, n: int, refused: bool) -> bytes:
    rows = [opened(email(name), day) for name, day in REPORTS[n]]
    content = report(*rows, *([opened(REFUSED, "21/05/2024")] if refused else []))
    path = remote / f"report_{n}.txt"
    path.write_bytes(content)
    an_hour_ago = time.time() - 3600
    os.utime(path, (an_hour_ago, an_hour_ago))
    return content


@pytest.fixture
def refusing_visits_warehouse(stack) -> Iterator[str]:
    """The stack's visits target refuses ``REFUSED`` (a check a warehouse may have), during the test."""
    dbname = stack.layout.database("visits")
    with psycopg.connect(pgdb.dsn(dbname)) as conn:
        open_store(conn, VisitsSettings(), "UTC").ensure_schema()  # what the DAG's first task does
        conn.execute(
            "CREATE OR REPLACE FUNCTION d7_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.email = '{REFUSED}' THEN RAISE EXCEPTION 'the warehouse refuses this visitor'"
            " USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE OR REPLACE TRIGGER d7_refuse BEFORE INSERT ON statistics FOR EACH ROW"
            " EXECUTE FUNCTION d7_refuse()"
        )
    try:
        yield dbname
    finally:
        with psycopg.connect(pgdb.dsn(dbname), autocommit=True) as conn:
            conn.execute("DROP TRIGGER IF EXISTS d7_refuse ON statistics")
            conn.execute("DROP FUNCTION IF EXISTS d7_refuse()")


def loads(dbname: str) -> list[tuple]:
    """``(file, status, reason)`` of our files in load order."""
    with psycopg.connect(pgdb.dsn(dbname)) as conn:
        return conn.execute(
            "SELECT file_name, status, reason FROM load_log WHERE file_name ~ %s ORDER BY load_id", (PATTERN,)
        ).fetchall()


def visitors(dbname: str) -> dict[str, tuple]:
    with psycopg.connect(pgdb.dsn(dbname)) as conn:
        rows = conn.execute(
            "SELECT email, fechaprimeravisita::text, fechaultimavisita::text, visitastotales FROM visitor"
            " WHERE email LIKE %s",
            ("%.d7@ordering.example.com",),
        ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def test_visit_files_load_in_ascending_n_and_a_failed_file_holds_back_the_later_ones(
    stack, stack_output: Path, refusing_visits_warehouse: str
):
    dbname = refusing_visits_warehouse
    remote = stack.layout.remote_visits_dir
    unpause_and_settle(stack, VISITS_DAG)
    originals = {n: put_report(remote, n, refused=n in BAD) for n in REPORTS}
    conf = {"reference_date": "2024-05-31", "file_pattern": PATTERN}
    tries = []

    # 1. 902 is refused: the run fails there, 903-905 wait untouched at the source.
    run_id = stack.trigger(VISITS_DAG, conf)
    assert stack.wait(VISITS_DAG, run_id)["state"] == "failed"
    tries.append(task(stack, VISITS_DAG, run_id, "process_files"))
    assert [(name, status) for name, status, _ in loads(dbname)] == [
        ("report_901.txt", "COMPLETED"),
        ("report_902.txt", "FAILED"),  # not retried: a refused row is permanent
    ]
    assert "line 4 of report_902.txt" in loads(dbname)[1][2] and REFUSED not in loads(dbname)[1][2]
    outcomes = {
        o["extra"]["file"]: o["extra"]
        for o in xcom(stack, VISITS_DAG, run_id, "process_files", "file_outcomes")
    }
    assert {name: extra["status"] for name, extra in outcomes.items()} == {
        "report_901.txt": "COMPLETED",
        "report_902.txt": "FAILED",
        "report_903.txt": "HELD_BACK",
        "report_904.txt": "HELD_BACK",
        "report_905.txt": "HELD_BACK",
    }
    assert {outcomes[f"report_{n}.txt"]["waits_for"] for n in (903, 904, 905)} == {"report_902.txt"}
    assert sorted(p.name for p in remote.glob("report_90*.txt")) == [
        f"report_{n}.txt" for n in (902, 903, 904, 905)
    ]

    # 2. The sender fixes 902; the operator clears the failed tasks: the run resumes at 902,
    #    loads it and 903, and stops at 904, refused too.
    originals[902] = put_report(remote, 902, refused=False)
    clear_failed(stack, VISITS_DAG, run_id)
    wait_for_try(stack, VISITS_DAG, run_id, "process_files", tries[0]["try_number"] + 1)
    assert stack.wait(VISITS_DAG, run_id)["state"] == "failed"
    tries.append(task(stack, VISITS_DAG, run_id, "process_files"))
    assert [(name, status) for name, status, _ in loads(dbname)][2:] == [
        ("report_902.txt", "COMPLETED"),
        ("report_903.txt", "COMPLETED"),
        ("report_904.txt", "FAILED"),
    ]

    # 3. 904 is given up on with a reason: set aside unloaded, and 905 loads.
    give_up = stack.trigger(VISITS_DAG, {**conf, "give_up_files": {"report_904.txt": REASON}})
    assert stack.wait(VISITS_DAG, give_up)["state"] == "success"
    tries.append(task(stack, VISITS_DAG, give_up, "process_files"))
    done = [(name, status) for name, status, _ in loads(dbname) if status != "FAILED"]
    assert done == [
        ("report_901.txt", "COMPLETED"),
        ("report_902.txt", "COMPLETED"),
        ("report_903.txt", "COMPLETED"),
        ("report_904.txt", "GIVEN_UP"),
        ("report_905.txt", "COMPLETED"),
    ]
    assert [reason for name, status, reason in loads(dbname) if status == "GIVEN_UP"] == [REASON]
    quarantined = list((stack.layout.shared / "visits" / "quarantine").glob("report_904_*.txt"))
    assert [hashlib.sha256(p.read_bytes()).digest() for p in quarantined] == [
        hashlib.sha256(originals[904]).digest()
    ]
    assert not list(remote.glob("report_90*.txt"))
    assert visitors(dbname) == EXPECTED_VISITORS

    (stack_output / "visits_order_across_workers.md").write_text(
        "| process_files of | try | worker | state |\n|---|---|---|---|\n"
        + "".join(
            f"| {what} | {ti['try_number']} | {ti['hostname']} | {ti['state']} |\n"
            for what, ti in zip(("902 refused", "902 fixed, cleared", "904 given up"), tries, strict=True)
        )
    )


# ---- 7b: Ender Turing on two workers leaves no personal data on any disk --------------------------

UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PHONE = re.compile(rb"\+3725\d{6}")
EMAIL = re.compile(rb"(?<![\w.+-])user\d+@example\.com(?![\w.-])")


def personal_data(dataset) -> dict[str, set[bytes]]:
    """Session ids, phone numbers and e-mails of the fake Ender Turing's whole dataset."""
    sessions = dataset.sessions
    return {
        "session id": {s["id"].encode() for s in sessions}
        | {s["caller_prev_session_id"].encode() for s in sessions if s["caller_prev_session_id"]},
        "phone number": {s["caller_id"].encode() for s in sessions}
        | {a["phone_number"].encode() for a in dataset.dictionaries["agents"]},
        "e-mail": {u["email"].encode() for u in dataset.dictionaries["users"]},
    }


def disks(layout) -> list[Path]:
    """Every worker's own disk (HOME, TMPDIR, work dir, AIRFLOW_HOME), its output, and the shared root."""
    return [*(layout.host(w) for w in WORKERS), *(layout.logs / f"{w}.log" for w in WORKERS), layout.shared]


def scan(paths: list[Path], values: dict[str, set[bytes]], visits_dir: Path) -> list[str]:
    """``path: kind`` for each file holding one of ``values``. Visit reports hold e-mails of their
    own (some spelled like the fake API's users): their archive is not searched for e-mails."""
    patterns = {"session id": UUID, "phone number": PHONE, "e-mail": EMAIL}
    found = []
    files = [p for root in paths for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file()]
    for path in files:
        content = path.read_bytes()
        for kind, pattern in patterns.items():
            if kind == "e-mail" and visits_dir in path.parents:
                continue
            if values[kind] & set(pattern.findall(content)):
                found.append(f"{path}: {kind}")
    return found


def test_enderturing_on_two_workers_loads_what_one_worker_does_and_leaves_no_personal_data(
    stack,
    stack_output: Path,
    reference,  # noqa: F811
):
    day = ENDERTURING_DAYS[1]
    conf = {"run_resync": False}
    unpause_and_settle(stack, ET_DAG)
    run_id = stack.trigger(ET_DAG, conf, enderturing_logical_date(day).isoformat())
    expected = reference.enderturing(day, conf)  # one process, one disk, meanwhile

    run = stack.wait(ET_DAG, run_id)
    tis = stack.task_instances(ET_DAG, run_id)
    assert run["state"] == "success", tis
    assert enderturing_state(stack.layout.database("enderturing"), day) == expected
    ids = {s["id"] for s in stack.systems.enderturing.dataset.sessions if s["start_dt"][:10] == str(day)}
    assert {json.loads(row)["id"] for row in expected["sessions"]} == ids

    wait_for_no_active_run(stack, ET_DAG)
    values = personal_data(stack.systems.enderturing.dataset)
    control = stack.layout.root / "scan-control" / "found.json"  # the scan finds what is there
    control.parent.mkdir(exist_ok=True)
    control.write_bytes(b" ".join(sorted(kind_values)[0] for kind_values in values.values()))
    assert scan([control.parent], values, stack.layout.shared / "visits") == [
        f"{control}: {kind}" for kind in values
    ]
    found = scan(disks(stack.layout), values, stack.layout.shared / "visits")
    (stack_output / "enderturing_personal_data_scan.txt").write_text(
        f"run {run_id}: "
        + ", ".join(f"{ti['task_id']} on {ti['hostname']}" for ti in tis)
        + f"\nscanned {', '.join(str(p) for p in disks(stack.layout))} for {sum(map(len, values.values()))}"
        + " session ids, phone numbers and e-mails of the dataset\n"
        + ("found:\n" + "\n".join(found) if found else "found none")
        + "\n"
    )
    assert found == []


# ---- 7c: declarative-job staging through the shared root ------------------------------------------

PIPELINE = ("read_orders", "drop_cancelled", "convert", "validate", ("load_orders", "write_rejects"))


class Consumers:
    """Which worker takes tasks from the ``default`` queue, switched by Celery's remote control
    (what ``celery control cancel_consumer`` / ``add_consumer`` and Flower do)."""

    def __init__(self, stack):
        broker = stack.stack.environment("control")["AIRFLOW__CELERY__BROKER_URL"]
        self.app = Celery(broker=broker)
        replies = self.app.control.ping(timeout=10)
        self.nodes = {name.split("@", 1)[0]: name for reply in replies for name in reply}
        assert set(self.nodes) == set(WORKERS), replies

    def only(self, worker: str) -> None:
        self.app.control.add_consumer("default", destination=[self.nodes[worker]], reply=True, timeout=10)
        others = [self.nodes[w] for w in WORKERS if w != worker]
        self.app.control.cancel_consumer("default", destination=others, reply=True, timeout=10)

    def all(self, stack) -> None:
        """Every worker back on ``default``, for good: restarted gracefully. A queue cancelled and
        added again by remote control is consumed until the next broker reconnection only (Celery
        does not re-select a queue it already knows), and a later test stops the broker."""
        self.app.control.add_consumer(
            "default", destination=list(self.nodes.values()), reply=True, timeout=10
        )
        for worker in WORKERS:
            stack.stack.restart(worker)
        stack.stack.wait_for_workers(120)


def test_job_components_on_different_workers_share_staging_through_the_shared_root(stack, stack_output: Path):
    day = JOBS_DAY - timedelta(days=1)  # a run of its own: test_pipelines_on_celery loads JOBS_DAY
    today = datetime.now(UTC).date()
    # The run the scheduler makes on unpausing (today's or yesterday's schedule) waits for its file.
    for input_day in (day, today, today - timedelta(days=1)):
        jobs_data.write_orders_export(stack.layout.jobs_data_root, input_day)
    unpause_and_settle(stack, JOB_DAG)
    consumers = Consumers(stack)
    first, second = WORKERS
    try:
        consumers.only(first)
        run_id = stack.trigger(JOB_DAG, {}, f"{day}T04:30:00Z")
        deadline = time.monotonic() + 300
        while (read := task(stack, JOB_DAG, run_id, "read_orders"))["state"] not in ("running", "success"):
            assert time.monotonic() < deadline and read["state"] not in ("failed", "upstream_failed"), read
            time.sleep(0.3)
        consumers.only(second)  # what comes next runs on the other worker
        # While the later components run: read_orders' output is on the shared root.
        run_dir = Path(xcom(stack, JOB_DAG, run_id, "_prepare")["run_dir"])
        while (read := task(stack, JOB_DAG, run_id, "read_orders"))["state"] != "success":
            assert time.monotonic() < deadline and read["state"] not in ("failed", "upstream_failed"), read
            time.sleep(0.3)
        staged = [p for p in (run_dir / "read_orders").rglob("*") if p.is_file()]
        run = stack.wait(JOB_DAG, run_id)
    finally:
        consumers.all(stack)
    tis = {ti["task_id"]: ti for ti in stack.task_instances(JOB_DAG, run_id)}
    assert run["state"] == "success", tis
    hosts = {task_id: ti["hostname"] for task_id, ti in tis.items()}
    assert hosts["read_orders"] == first
    pairs = [
        (producer, consumer)
        for producer, consumers_of in zip(PIPELINE, PIPELINE[1:], strict=False)
        for consumer in (consumers_of if isinstance(consumers_of, tuple) else (consumers_of,))
    ]
    crossed = [(p, c) for p, c in pairs if hosts[p] != hosts[c]]
    assert crossed, hosts
    with psycopg.connect(pgdb.dsn(stack.layout.database("jobs"))) as conn:
        orders = {row[0] for row in conn.execute("SELECT order_id FROM sales.orders")}
    assert orders >= {1001, 1003, 1006}

    assert stack.layout.shared in run_dir.parents, run_dir
    assert staged, f"nothing staged by read_orders under {run_dir}"
    assert not run_dir.exists()  # _finalize removed the run's staging once every component succeeded
    local = [p for w in WORKERS for p in stack.layout.host(w).rglob("*") if run_dir.name in p.name]
    assert local == []
    (stack_output / "jobs_staging_across_workers.md").write_text(
        f"{JOB_DAG} {run_id}: staging {run_dir}; read_orders staged {[str(p) for p in staged]}\n\n"
        "| task | worker |\n|---|---|\n"
        + "".join(f"| {task_id} | {host} |\n" for task_id, host in hosts.items())
        + f"\nproducer → consumer on different workers: {crossed}\n"
    )
