"""Visitor metrics over several runs, crash injection and recovery, SFTP failures."""

from __future__ import annotations

import pytest

from dev.visits_data import header, write_report
from etlkit.common.errors import InjectedFault
from etlkit.visits import files, process
from etlkit.visits.store import VisitsStore
from tests.conftest import task_states

pytestmark = pytest.mark.visits


def opened(email: str, day: str, sent: str = "01/05/2024 09:00") -> str:
    return f"{email},,,,{sent},{day} 10:00,1,0,-,0,0,-,-,-,-"


def report(*rows: str) -> bytes:
    return "".join(f"{line}\r\n" for line in (header(), *rows)).encode()


def visitor(visits, email: str) -> tuple:
    return visits.query(
        "SELECT fechaprimeravisita::text, fechaultimavisita::text, visitastotales, visitasanioactual,"
        " visitasmesactual FROM visitor WHERE email = %s",
        (email,),
    )[0]


def test_out_of_order_files_and_period_rollover(visits):
    visits.put(
        "report_1.txt", report(opened("a@example.com", "20/05/2024"), opened("a@example.com", "21/05/2024"))
    )
    assert visits.run(reference_date="2024-05-31").state == "success"
    assert visitor(visits, "a@example.com") == ("2024-05-20", "2024-05-21", 2, 2, 2)

    # An older file arriving later: totals count it, first and last visits do not move.
    visits.put(
        "report_2.txt",
        report(opened("a@example.com", "01/05/2024"), opened("b@example.com", "03/05/2023")),
    )
    assert visits.run(reference_date="2024-05-31").state == "success"
    assert visitor(visits, "a@example.com") == ("2024-05-20", "2024-05-21", 3, 3, 3)
    # A visit in 2023 with R in 2024 counts in neither period counter.
    assert visitor(visits, "b@example.com") == ("2023-05-03", "2023-05-03", 1, 0, 0)

    # Roll-over with no files: the month counter follows R, totals never change.
    assert visits.run(reference_date="2024-06-01").state == "success"
    assert visitor(visits, "a@example.com") == ("2024-05-20", "2024-05-21", 3, 3, 0)
    assert visits.run(reference_date="2025-01-01").state == "success"
    assert visitor(visits, "a@example.com") == ("2024-05-20", "2024-05-21", 3, 0, 0)
    assert visits.scalar("SELECT count(*) FROM statistics") == 4


def final_state(visits) -> dict:
    """Everything a run leaves behind that must not depend on crashes (ids and timestamps aside)."""
    return {
        "counts": {k: v for k, v in visits.counts().items() if k != "load_log"},
        "statuses": visits.query(
            "SELECT file_name, status FROM load_log WHERE status <> 'FAILED' ORDER BY 1"
        ),
        "visitor": visits.query("SELECT * FROM visitor ORDER BY email"),
        "statistics": visits.query(
            "SELECT source_file, line_number, email, fecha_open FROM statistics ORDER BY 1, 2"
        ),
        "errors": visits.query("SELECT source_file, line_number, rule FROM errors ORDER BY 1, 2"),
        "archives": sorted(m for members in visits.archive_members().values() for m in members.items()),
        "remote": visits.remote_names(),
    }


def put_reports(sandbox) -> None:
    # Disjoint e-mails; tests/visits/test_file_order.py injects faults into reports that share them.
    for n in (1, 2):
        path = write_report(sandbox.root / "gen" / f"report_{n}.txt", 450, seed=n, email_prefix=f"f{n}user")
        sandbox.put(path.name, path.read_bytes())


@pytest.fixture
def clean_run(visits_sandbox) -> dict:
    """The state one clean run of the two reports leaves (own schema and directories)."""
    clean = visits_sandbox("clean", batch_rows=100)
    put_reports(clean)
    assert clean.run().state == "success"
    return final_state(clean)


@pytest.fixture
def crashy(visits_sandbox, clean_run):
    """A second sandbox with the same input, batch size small enough for several COPY batches."""
    sandbox = visits_sandbox("crashy", batch_rows=100)
    put_reports(sandbox)
    return sandbox


def test_crash_after_second_batch_is_retried_within_the_run(crashy, clean_run, monkeypatch):
    real_copy = VisitsStore.copy_statistics
    calls = {"n": 0}

    def copy_then_crash(self, rows):
        calls["n"] += 1
        real_copy(self, rows)
        if calls["n"] == 2:  # after the 2nd batch of the first file, before its commit
            raise InjectedFault("process died before commit")

    monkeypatch.setattr(VisitsStore, "copy_statistics", copy_then_crash)
    dag_run = crashy.run()

    assert dag_run.state == "success", task_states(dag_run)  # process_files' retry recovered
    statuses = sorted(row[0] for rows in crashy.loads().values() for row in rows)
    assert statuses == ["COMPLETED", "COMPLETED", "FAILED"]
    assert final_state(crashy) == clean_run


def test_fault_before_commit_leaves_nothing_then_next_run_equals_clean_run(crashy, clean_run, monkeypatch):
    def always_crash(self, rows):
        raise InjectedFault("disk full before commit")

    real_copy = VisitsStore.copy_errors
    monkeypatch.setattr(VisitsStore, "copy_errors", always_crash)
    assert crashy.run().state == "failed"
    assert {k: v for k, v in crashy.counts().items() if k != "load_log"} == {
        "statistics": 0,
        "errors": 0,
        "visitor": 0,
    }
    assert {row[0] for rows in crashy.loads().values() for row in rows} == {"FAILED"}
    assert crashy.remote_names() == ["report_1.txt", "report_2.txt"]
    assert list(crashy.backup.iterdir()) == []

    monkeypatch.setattr(VisitsStore, "copy_errors", real_copy)
    assert crashy.run().state == "success"
    assert final_state(crashy) == clean_run


CRASH_POINTS = {
    # step that dies: (patched object, attribute, zips left, files left at the source)
    "archive": (files, "write_verified_zip", 0, ["report_1.txt", "report_2.txt"]),
    # report_1 is archived, then its delete dies: report_2 waits behind it, not even loaded.
    "delete": (process.ReportProcessor, "_delete_at_source", 1, ["report_1.txt", "report_2.txt"]),
}


@pytest.mark.parametrize("crash_point", sorted(CRASH_POINTS))
def test_crash_after_commit_then_rerun_equals_clean_run(crashy, clean_run, monkeypatch, crash_point):
    owner, attribute, zips_left, remote_left = CRASH_POINTS[crash_point]

    def crash(*args, **kwargs):
        raise InjectedFault(f"process killed before {crash_point}")

    real = getattr(owner, attribute)
    monkeypatch.setattr(owner, attribute, crash)
    assert crashy.run().state == "failed"
    assert crashy.loads() == {"report_1.txt": [("LOADED", 450, 441, 9)]}  # report_2 held back
    assert crashy.remote_names() == remote_left
    assert len(list(crashy.backup.glob("*.zip"))) == zips_left

    monkeypatch.setattr(owner, attribute, real)
    assert crashy.run().state == "success"
    assert final_state(crashy) == clean_run


def test_crash_between_source_delete_and_status_update_is_closed(crashy, clean_run, monkeypatch):
    """The file is gone and the load still LOADED: the retry (or the next listing) closes it."""
    calls = {"n": 0}
    real = VisitsStore.mark_source_deleted

    def crash_first_time(self, load_id):
        calls["n"] += 1
        if calls["n"] == 1:
            raise InjectedFault("process killed after the source delete")
        return real(self, load_id)

    monkeypatch.setattr(VisitsStore, "mark_source_deleted", crash_first_time)
    assert crashy.run().state == "success"
    assert final_state(crashy) == clean_run


def test_two_concurrent_executions_load_a_file_once(visits, sshd, airflow_conn):
    """Two workers on the same file at the same moment: one loads, the other finds the load."""
    import threading

    import psycopg

    from etlkit.hooks.sftp import VerifiedSFTPHook
    from etlkit.visits.process import RemoteFile, ReportProcessor, RunInfo, open_store
    from etlkit.visits.settings import VisitsSettings

    path = write_report(visits.root / "gen" / "report_1.txt", 300, seed=5)
    visits.put(path.name, path.read_bytes())
    config = VisitsSettings.model_validate(visits.config())
    with psycopg.connect(visits.dsn) as conn:
        open_store(conn, config, "UTC").ensure_schema()
    barrier = threading.Barrier(2)
    outcomes, failures = [], []
    real_load = ReportProcessor._load_transaction

    def synchronised_load(self, *args):
        barrier.wait(timeout=30)
        return real_load(self, *args)

    def worker(n: int) -> None:
        try:
            with (
                psycopg.connect(visits.dsn) as conn,
                VerifiedSFTPHook("sftp_visits").verified_client() as sftp,
            ):
                run = RunInfo("test", f"concurrent_{n}", __import__("datetime").date(2024, 5, 10))
                st = sftp.stat(f"{config.remote_dir}/report_1.txt")
                remote = RemoteFile("report_1.txt", st.st_size, st.st_mtime)
                outcomes.append(
                    ReportProcessor(sftp, open_store(conn, config, "UTC"), config, run).process(remote)
                )
        except Exception as exc:  # collected and asserted below
            failures.append(exc)

    ReportProcessor._load_transaction = synchronised_load
    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        ReportProcessor._load_transaction = real_load

    assert failures == []
    assert (
        visits.scalar("SELECT count(*) FROM statistics") + visits.scalar("SELECT count(*) FROM errors") == 300
    )
    assert sorted(row[0] for rows in visits.loads().values() for row in rows) in (
        ["COMPLETED"],
        ["COMPLETED", "DUPLICATE"],
    )
    assert visits.remote_names() == []


def test_source_changed_after_download_is_not_deleted(visits, monkeypatch):
    path = visits.put("report_1.txt", report(opened("a@example.com", "20/05/2024")))
    real = files.stream_to_staging

    def download_then_upstream_rewrites(source, target, expected_size):
        staged = real(source, target, expected_size)
        path.write_bytes(path.read_bytes() + b"late@example.com,,,,01/05/2024 09:00,-,0,0,-,0,0,-,-,-,-\r\n")
        return staged

    monkeypatch.setattr(files, "stream_to_staging", download_then_upstream_rewrites)
    assert visits.run().state == "success"
    assert visits.loads()["report_1.txt"] == [("LOADED", 1, 1, 0)]
    assert visits.remote_names() == ["report_1.txt"]
