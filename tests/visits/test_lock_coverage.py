"""Every transaction that writes the visits tables takes the advisory lock first (spec §6.1).

Another session holds the lock; each write path then waits for it (here it gives up after a short
``lock_timeout``, a transient error) and writes nothing while the lock is held.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime

import psycopg
import pytest

from dev.visits_data import write_report
from etlkit.common.retry import is_transient
from etlkit.hooks.sftp import VerifiedSFTPHook
from etlkit.visits.process import RemoteFile, ReportProcessor, RunInfo, open_store
from etlkit.visits.settings import VisitsSettings
from etlkit.visits.store import ADVISORY_LOCK_KEY

pytestmark = pytest.mark.visits

RUN = RunInfo("test", "lock_coverage", date(2024, 5, 10))


@pytest.fixture
def config(visits) -> VisitsSettings:
    config = VisitsSettings.model_validate(visits.config())
    with psycopg.connect(visits.dsn) as conn:
        open_store(conn, config, "UTC").ensure_schema()
    return config


@pytest.fixture
def lock_holder(visits):
    """Another session holding the visits lock in an open transaction."""
    with psycopg.connect(visits.dsn) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        yield holder
        holder.rollback()


@pytest.fixture
def impatient_store(visits, config):
    """A store whose lock waits end after 200 ms with ``LockNotAvailable``."""
    with psycopg.connect(visits.dsn) as conn:
        store = open_store(conn, config, "UTC")
        conn.execute("SET lock_timeout = '200ms'")
        yield store


def file_fields(name: str = "report_1.txt") -> dict:
    now = datetime.now(UTC)
    return {"file_name": name, "file_size": 10, "sha256": "0" * 64, "remote_mtime": now, "started_at": now}


def loaded_row(visits, config) -> int:
    with psycopg.connect(visits.dsn) as conn:
        store = open_store(conn, config, "UTC")
        with conn.transaction():
            return store.insert_load(status="LOADED", file=file_fields(), run=RUN.as_load_fields())


def load_row(visits, load_id: int) -> tuple:
    return visits.query(
        "SELECT status, archive_name, archived_at, source_deleted_at, finished_at FROM load_log"
        " WHERE load_id = %s",
        (load_id,),
    )[0]


WRITES = {
    "mark_archived": lambda store, load_id: store.mark_archived(load_id, "report_1_20240510T000200.zip"),
    "mark_source_deleted": lambda store, load_id: store.mark_source_deleted(load_id),
    "mark_finished": lambda store, load_id: store.mark_finished(load_id),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_load_log_updates_wait_for_the_lock(visits, config, impatient_store, write):
    load_id = loaded_row(visits, config)
    before = load_row(visits, load_id)

    with psycopg.connect(visits.dsn) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        with pytest.raises(psycopg.errors.LockNotAvailable) as raised:
            WRITES[write](impatient_store, load_id)
        assert load_row(visits, load_id) == before
        holder.rollback()

    assert is_transient(raised.value)
    WRITES[write](impatient_store, load_id)  # lock free: it writes
    assert load_row(visits, load_id) != before


def test_failed_row_waits_for_the_lock(visits, config, impatient_store, lock_holder, caplog):
    impatient_store.record_failure(file=file_fields(), run=RUN.as_load_fields(), error=RuntimeError("boom"))

    assert visits.query("SELECT status FROM load_log") == []
    assert "could not record the FAILED load of report_1.txt" in caplog.text


def test_duplicate_row_waits_for_the_lock(visits, config, impatient_store):
    path = write_report(visits.root / "gen" / "report_1.txt", 30, seed=1)
    visits.put(path.name, path.read_bytes())
    with VerifiedSFTPHook("sftp_visits").verified_client() as sftp:
        process = ReportProcessor(sftp, impatient_store, config, RUN).process
        assert process(remote_file(sftp, config)).extra["status"] == "COMPLETED"
        visits.put(path.name, path.read_bytes())  # re-delivered: a DUPLICATE
        with psycopg.connect(visits.dsn) as holder:
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
            with pytest.raises(psycopg.errors.LockNotAvailable):
                process(remote_file(sftp, config))
            holder.rollback()
        assert visits.query("SELECT status FROM load_log ORDER BY load_id") == [("COMPLETED",)]
        assert visits.remote_names() == ["report_1.txt"]

        assert process(remote_file(sftp, config)).extra["status"] == "DUPLICATE"
    assert visits.query("SELECT status FROM load_log ORDER BY load_id") == [("COMPLETED",), ("DUPLICATE",)]
    assert visits.remote_names() == []


def remote_file(sftp, config) -> RemoteFile:
    st = sftp.stat(f"{config.remote_dir}/report_1.txt")
    return RemoteFile("report_1.txt", st.st_size, st.st_mtime)


def test_a_write_waits_while_the_lock_is_held_then_goes_on(visits, config, lock_holder):
    """Without a lock timeout the writer simply waits: nothing is written until the holder ends."""
    load_id = loaded_row(visits, config)
    before = load_row(visits, load_id)
    done = threading.Event()
    failures = []

    with psycopg.connect(visits.dsn) as conn:
        store = open_store(conn, config, "UTC")
        writer_pid = conn.info.backend_pid

        def finish() -> None:
            try:
                store.mark_finished(load_id)
            except Exception as exc:  # asserted below
                failures.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=finish)
        thread.start()
        waiting = False
        while not waiting and not done.is_set():
            waiting = bool(
                visits.query(
                    "SELECT 1 FROM pg_locks WHERE pid = %s AND locktype = 'advisory' AND NOT granted",
                    (writer_pid,),
                )
            )
            time.sleep(0.05)
        assert waiting, "the write did not wait for the lock"
        assert load_row(visits, load_id) == before
        lock_holder.rollback()
        thread.join(timeout=60)

    assert failures == []
    assert load_row(visits, load_id)[0] == "COMPLETED"
