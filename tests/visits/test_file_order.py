"""Files load in ascending ``<n>`` by construction, and a failed file holds back the later ones.

The first visit of an e-mail is set when its visitor row is inserted, so it depends on the order
of the loads (spec §1, §5.2). The runner may start task instances in any order: here it starts
mapped instances highest map index first, which a correct DAG must not notice.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from dev.visits_data import write_report
from etlkit.common.errors import TransientError
from etlkit.visits import files
from etlkit.visits.store import VisitsStore
from tests.conftest import task_states
from tests.visits.test_metrics_and_recovery import final_state, opened, report, visitor

pytestmark = pytest.mark.visits

NUMBERS = (101, 102, 103, 104)
FAILING = "report_102.txt"


@pytest.fixture
def reversing_runner(monkeypatch):
    """``dag.test()`` runs a mapped task's instances highest map index first."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.sdk.definitions import dag as dag_module
    from airflow.utils.session import create_session
    from airflow.utils.state import State
    from sqlalchemy import func, select

    real_run_task = dag_module._run_task

    def run_highest_first(*, ti, task, **kwargs):
        if ti.map_index >= 0:
            with create_session() as session:
                higher_pending = session.scalar(
                    select(func.count())
                    .select_from(TaskInstance)
                    .where(
                        TaskInstance.dag_id == ti.dag_id,
                        TaskInstance.run_id == ti.run_id,
                        TaskInstance.task_id == ti.task_id,
                        TaskInstance.map_index > ti.map_index,
                        TaskInstance.state.not_in(list(State.finished)),
                    )
                )
            if higher_pending:
                return None  # left scheduled: the runner comes back to it
        return real_run_task(ti=ti, task=task, **kwargs)

    monkeypatch.setattr(dag_module, "_run_task", run_highest_first)


def load_order(sandbox) -> list[str]:
    return [
        name
        for (name,) in sandbox.query(
            "SELECT file_name FROM load_log WHERE status <> 'FAILED' ORDER BY load_id"
        )
    ]


def test_files_load_in_ascending_n_whatever_order_the_runner_picks(visits, reversing_runner):
    visits.put(
        "report_101.txt", report(opened("a@example.com", "20/05/2024"), opened("b@example.com", "02/05/2024"))
    )
    visits.put(
        "report_102.txt", report(opened("a@example.com", "10/05/2024"), opened("b@example.com", "25/05/2024"))
    )
    visits.put("report_103.txt", report(opened("a@example.com", "05/05/2024")))
    visits.put("report_9.txt", report(opened("b@example.com", "01/05/2024")))  # numeric: 9 < 101

    dag_run = visits.run(reference_date="2024-05-31")

    assert dag_run.state == "success", task_states(dag_run)
    assert load_order(visits) == ["report_9.txt", "report_101.txt", "report_102.txt", "report_103.txt"]
    # a@ was first seen in report_101 (20 May); its older visits arrived in later files.
    assert visitor(visits, "a@example.com") == ("2024-05-20", "2024-05-20", 3, 3, 3)
    assert visitor(visits, "b@example.com") == ("2024-05-01", "2024-05-25", 3, 3, 3)


def put_overlapping_reports(sandbox) -> None:
    """Four reports sharing one small pool of e-mails: the load order decides first visits."""
    for n in NUMBERS:
        path = write_report(sandbox.root / "gen" / f"report_{n}.txt", 300, seed=n, emails=60)
        sandbox.put(path.name, path.read_bytes())


@pytest.fixture
def clean_ordered_run(visits_sandbox) -> dict:
    clean = visits_sandbox("clean", batch_rows=100)
    put_overlapping_reports(clean)
    assert clean.run().state == "success"
    assert load_order(clean) == [f"report_{n}.txt" for n in NUMBERS]
    return final_state(clean)


@pytest.fixture
def faulty(visits_sandbox, clean_ordered_run):
    sandbox = visits_sandbox("faulty", batch_rows=100)
    put_overlapping_reports(sandbox)
    return sandbox


def fail_loading(monkeypatch, name: str, times: int | None) -> None:
    """``copy_statistics`` of ``name`` fails (a lost connection), ``times`` times or always."""
    real_copy = VisitsStore.copy_statistics
    failures = Counter()

    def copy(self, rows):
        if rows and rows[0][1] == name and (times is None or failures[name] < times):
            failures[name] += 1
            raise TransientError(f"injected: connection lost while loading {name}")
        return real_copy(self, rows)

    monkeypatch.setattr(VisitsStore, "copy_statistics", copy)


def count_downloads(monkeypatch) -> Counter:
    downloads = Counter()
    real = files.stream_to_staging

    def counted(source, target, expected_size):
        downloads[target.name] += 1
        return real(source, target, expected_size)

    monkeypatch.setattr(files, "stream_to_staging", counted)
    return downloads


def logged(caplog, prefix: str) -> list[dict]:
    return [
        json.loads(r.getMessage()[len(prefix) :]) for r in caplog.records if r.getMessage().startswith(prefix)
    ]


def test_a_failed_file_holds_back_the_later_ones_until_the_rerun(
    faulty, clean_ordered_run, monkeypatch, reversing_runner, caplog
):
    real_copy = VisitsStore.copy_statistics
    fail_loading(monkeypatch, FAILING, times=None)

    dag_run = faulty.run()

    assert dag_run.state == "failed"

    assert faulty.loads() == {
        "report_101.txt": [("COMPLETED", 300, 294, 6)],
        FAILING: [("FAILED", 0, 0, 0)] * 3,  # first try and two retries
    }
    assert faulty.remote_names() == [FAILING, "report_103.txt", "report_104.txt"]
    assert [name for members in faulty.archive_members().values() for name in members] == ["report_101.txt"]
    # The alert names the file; the run summary gives every listed file's outcome.
    alerts = [a for a in logged(caplog, "ETL_ALERT ") if a["error_type"] == "TransientError"]
    assert alerts and {a["pipeline_context"].get("file") for a in alerts} == {FAILING}
    summary = [m for m in logged(caplog, "ETL_METRICS ") if "files" in m][-1]
    assert summary["files"] == {
        "report_101.txt": "COMPLETED",
        FAILING: "FAILED",
        "report_103.txt": "HELD_BACK",
        "report_104.txt": "HELD_BACK",
    }
    # summarize read process_files' file_outcomes, pushed although the task failed.
    assert task_states(dag_run)["summarize"] == "failed"
    assert "3 files not loaded (FAILED: the file that failed; HELD_BACK: waits for it" in caplog.text

    monkeypatch.setattr(VisitsStore, "copy_statistics", real_copy)
    assert faulty.run().state == "success"
    assert final_state(faulty) == clean_ordered_run


def test_a_retry_resumes_at_the_failed_file(faulty, clean_ordered_run, monkeypatch, reversing_runner, caplog):
    fail_loading(monkeypatch, FAILING, times=1)
    downloads = count_downloads(monkeypatch)

    dag_run = faulty.run()

    assert dag_run.state == "success", task_states(dag_run)
    assert load_order(faulty) == [f"report_{n}.txt" for n in NUMBERS]
    # Done files are skipped by the load-control log, not downloaded again.
    assert downloads == {"report_101.txt": 1, FAILING: 2, "report_103.txt": 1, "report_104.txt": 1}
    summary = [m for m in logged(caplog, "ETL_METRICS ") if "files" in m][-1]
    assert summary["files"] == dict.fromkeys((f"report_{n}.txt" for n in NUMBERS), "COMPLETED")
    assert summary["rows_read"] == 4 * 300
    assert final_state(faulty) == clean_ordered_run
