"""SFTP server down, auth refused, wrong or missing host key: clear failure, nothing touched."""

from __future__ import annotations

import subprocess

import pytest
from airflow.utils.session import create_session

from dev.sshd import free_port
from dev.visits_data import write_report
from tests.conftest import task_states
from tests.visits.test_file_order import logged

pytestmark = pytest.mark.visits


def tries(dag_run, task_id: str) -> tuple[str, int]:
    with create_session() as session:
        ti = next(t for t in dag_run.get_task_instances(session=session) if t.task_id == task_id)
        return str(ti.state), ti.try_number


def other_public_key(tmp_path) -> str:
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


@pytest.fixture
def one_report(visits):
    path = write_report(visits.root / "gen" / "report_1.txt", 20, seed=1)
    visits.put(path.name, path.read_bytes())
    return visits


def assert_untouched(visits, caplog, message: str) -> None:
    assert visits.remote_names() == ["report_1.txt"]
    assert visits.counts() == {"load_log": 0, "statistics": 0, "errors": 0, "visitor": 0}
    assert not list(visits.backup.iterdir())
    assert message in caplog.text


def test_server_down_is_retried_then_fails_clearly(one_report, sshd, airflow_conn, airflow_var, caplog):
    airflow_var("etl_retry_policy", {"retries": 1, "retry_delay_s": 0})  # the runtime override
    connection = sshd.connection()
    connection["port"] = free_port()  # nothing listens there
    airflow_conn("sftp_visits", connection)

    dag_run = one_report.run()

    assert dag_run.state == "failed"
    assert tries(dag_run, "list_remote_files") == ("failed", 2)  # 1 retry, as the Variable says
    assert_untouched(one_report, caplog, "Unable to connect to port")


def test_auth_refused_fails_clearly(one_report, sshd, airflow_conn, tmp_path, caplog):
    airflow_conn("sftp_visits", sshd.connection(key_file=str(other_public_key(tmp_path))))

    dag_run = one_report.run()

    assert dag_run.state == "failed"
    assert tries(dag_run, "list_remote_files") == ("failed", 1)  # not retried: the answer cannot change
    assert_untouched(
        one_report, caplog, "the server refused the credentials of 'root' (Authentication failed.)"
    )
    # summarize (all_done) still runs although process_files never did (no file_outcomes XCom): it
    # logs the run's summary and fails the run on the failed listing.
    assert task_states(dag_run)["process_files"] == "upstream_failed"
    assert task_states(dag_run)["summarize"] == "failed"
    summary = [m for m in logged(caplog, "ETL_METRICS ") if "files" in m][-1]
    assert (summary["files"], summary["rows_read"]) == ({}, 0)
    assert "listing the remote files failed: see list_remote_files" in caplog.text


def test_wrong_host_key_fails_before_any_download_without_retry(
    one_report, sshd, airflow_conn, tmp_path, caplog
):
    key = other_public_key(tmp_path)
    wrong = " ".join(key.with_suffix(".pub").read_text().split()[:2])
    airflow_conn("sftp_visits", sshd.connection(host_key=wrong))

    dag_run = one_report.run()

    assert dag_run.state == "failed"
    assert tries(dag_run, "list_remote_files")[0] == "failed"
    assert_untouched(one_report, caplog, "host key of 127.0.0.1 does not match")
    # Not retried once the mismatch is seen (an earlier try may have met a transient error).
    alerts = [
        r
        for r in caplog.records
        if r.getMessage().startswith("ETL_ALERT ") and "does not match" in r.getMessage()
    ]
    assert len(alerts) == 1


def test_connection_without_host_key_is_a_configuration_error(one_report, sshd, airflow_conn, caplog):
    connection = sshd.connection()
    del connection["extra"]["host_key"]
    airflow_conn("sftp_visits", connection)

    dag_run = one_report.run()

    assert dag_run.state == "failed"
    assert tries(dag_run, "list_remote_files") == ("failed", 1)
    assert_untouched(one_report, caplog, "no host_key in the extra")
