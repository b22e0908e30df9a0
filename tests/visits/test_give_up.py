"""A file that holds back the later ones is given up on with a reason (param ``give_up_files``).

It is set aside unloaded: a byte-identical copy in quarantine, a ``GIVEN_UP`` row in ``load_log``
with the operator's reason, removed at the source; the files after it then load in order, and the
target equals a clean run of the other files.
"""

from __future__ import annotations

import hashlib

import psycopg
import pytest

from dev.visits_data import write_report
from etlkit.common.errors import ConfigurationError
from etlkit.visits.process import parse_give_up
from etlkit.visits.settings import VisitsSettings
from tests.conftest import task_states
from tests.visits.test_file_order import FAILING, NUMBERS, fail_loading, load_order, logged
from tests.visits.test_metrics_and_recovery import final_state

pytestmark = pytest.mark.visits

REASON = "the warehouse refuses a value in it; the sender resends it corrected"
OTHERS = [n for n in NUMBERS if f"report_{n}.txt" != FAILING]


def put_reports(sandbox, numbers) -> None:
    """The reports of ``test_file_order`` (one small pool of e-mails: the order decides first visits)."""
    for n in numbers:
        path = write_report(sandbox.root / "gen" / f"report_{n}.txt", 300, seed=n, emails=60)
        sandbox.put(path.name, path.read_bytes())


@pytest.fixture
def clean_without_failing(visits_sandbox) -> dict:
    clean = visits_sandbox("clean", batch_rows=100)
    put_reports(clean, OTHERS)
    assert clean.run().state == "success"
    return final_state(clean)


@pytest.fixture
def blocked(visits_sandbox, clean_without_failing, monkeypatch):
    """A run failed at ``FAILING`` (the database refuses it, for good): the later files are held back."""
    sandbox = visits_sandbox("blocked", batch_rows=100)
    put_reports(sandbox, NUMBERS)
    fail_loading(monkeypatch, FAILING, times=None)
    assert sandbox.run().state == "failed"
    assert sandbox.remote_names() == [FAILING, "report_103.txt", "report_104.txt"]
    return sandbox


def test_a_file_given_up_with_a_reason_lets_the_later_ones_load(blocked, clean_without_failing, caplog):
    original = hashlib.sha256((blocked.remote / FAILING).read_bytes()).hexdigest()

    # The cause is still there: the file is not loaded again, it is set aside.
    dag_run = blocked.run(give_up_files={FAILING: REASON})

    assert dag_run.state == "success", task_states(dag_run)
    assert load_order(blocked) == ["report_101.txt", FAILING, "report_103.txt", "report_104.txt"]
    given_up = blocked.query(
        "SELECT status, reason, rows_read, archive_name, source_deleted_at IS NOT NULL,"
        " finished_at IS NOT NULL FROM load_log WHERE file_name = %s AND status <> 'FAILED'",
        (FAILING,),
    )
    assert len(given_up) == 1
    status, reason, rows_read, archive_name, deleted, finished = given_up[0]
    assert (status, reason, rows_read, deleted, finished) == ("GIVEN_UP", REASON, 0, True, True)
    copy = blocked.quarantine / archive_name
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == original
    assert blocked.scalar("SELECT count(*) FROM statistics WHERE source_file = %s", (FAILING,)) == 0
    summary = [m for m in logged(caplog, "ETL_METRICS ") if "files" in m][-1]
    assert summary["files"] == {  # report_101 loaded in the blocked run: not listed again
        FAILING: "GIVEN_UP",
        "report_103.txt": "COMPLETED",
        "report_104.txt": "COMPLETED",
    }
    assert blocked.scalar("SELECT files_given_up FROM load_log_monthly") == 1

    # What the other files left equals a clean run of them alone (the given-up file aside).
    state = final_state(blocked)
    assert [row for row in state.pop("statuses") if row[0] != FAILING] == clean_without_failing["statuses"]
    assert state == {k: v for k, v in clean_without_failing.items() if k != "statuses"}

    # Run again with the same param (the file is gone, given up already): nothing changes.
    after = final_state(blocked)
    assert blocked.run(give_up_files={FAILING: REASON}).state == "success"
    assert final_state(blocked) == after
    assert blocked.scalar("SELECT count(*) FROM load_log WHERE status = 'GIVEN_UP'") == 1


def test_giving_up_a_file_that_is_not_listed_does_nothing(blocked):
    before = final_state(blocked)

    dag_run = blocked.run(give_up_files={"report_7.txt": REASON})

    assert dag_run.state == "failed"
    assert task_states(dag_run)["process_files"] == "failed"
    assert final_state(blocked) == before
    assert blocked.scalar("SELECT count(*) FROM load_log WHERE status = 'GIVEN_UP'") == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["report_1.txt"], "must be an object"),
        ({"report_1.txt": "  "}, "needs a reason"),
        ({"report_1.txt": None}, "needs a reason"),
        ({"../report_1.txt": "x"}, "is not a report file name"),
    ],
)
def test_give_up_param_is_checked(value, message):
    with pytest.raises(ConfigurationError, match=message):
        parse_give_up(value, VisitsSettings())


def test_give_up_param_trims_reasons():
    assert parse_give_up({"report_1.txt": " why "}, VisitsSettings()) == {"report_1.txt": "why"}
    assert parse_give_up(None, VisitsSettings()) == {}


def test_a_load_log_made_before_given_up_existed_admits_it(visits):
    """``ensure_schema`` widens the status check of an older table, keeping its rows."""
    old_check = "CHECK (status IN ('LOADED','COMPLETED','REJECTED','QUARANTINED','FAILED','DUPLICATE'))"
    with psycopg.connect(visits.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{visits.schema}"')
        conn.execute(
            f'CREATE TABLE "{visits.schema}".load_log (load_id BIGINT GENERATED ALWAYS AS IDENTITY'
            " PRIMARY KEY, file_name TEXT NOT NULL, file_size BIGINT NOT NULL, sha256 CHAR(64) NOT NULL,"
            " remote_mtime TIMESTAMPTZ, encoding TEXT, column2_header TEXT,"
            f" status TEXT NOT NULL {old_check}, reason TEXT,"
            " rows_read INTEGER NOT NULL DEFAULT 0, rows_loaded INTEGER NOT NULL DEFAULT 0,"
            " rows_rejected INTEGER NOT NULL DEFAULT 0, visits_loaded INTEGER NOT NULL DEFAULT 0,"
            " reference_date DATE, dag_id TEXT NOT NULL, dag_run_id TEXT NOT NULL,"
            " started_at TIMESTAMPTZ NOT NULL, committed_at TIMESTAMPTZ, archive_name TEXT,"
            " archived_at TIMESTAMPTZ, source_deleted_at TIMESTAMPTZ, finished_at TIMESTAMPTZ,"
            " CHECK (rows_read = rows_loaded + rows_rejected))"
        )
        conn.execute(
            f'INSERT INTO "{visits.schema}".load_log (file_name, file_size, sha256, status, dag_id, dag_run_id,'  # noqa: S608
            " started_at) VALUES ('report_1.txt', 1, repeat('0', 64), 'FAILED', 'd', 'r', now())"
        )

    assert visits.run().state == "success"  # ensure_schema on the old table

    visits.query(
        "INSERT INTO load_log (file_name, file_size, sha256, status, dag_id, dag_run_id, started_at)"
        " VALUES ('report_2.txt', 1, repeat('1', 64), 'GIVEN_UP', 'd', 'r', now()) RETURNING load_id"
    )
    assert visits.query("SELECT file_name, status FROM load_log ORDER BY load_id") == [
        ("report_1.txt", "FAILED"),
        ("report_2.txt", "GIVEN_UP"),
    ]
    with pytest.raises(psycopg.errors.CheckViolation):
        visits.query(
            "INSERT INTO load_log (file_name, file_size, sha256, status, dag_id, dag_run_id, started_at)"
            " VALUES ('report_3.txt', 1, repeat('1', 64), 'BOGUS', 'd', 'r', now()) RETURNING load_id"
        )
