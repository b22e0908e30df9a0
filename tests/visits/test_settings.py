"""VisitsSettings (the run's settings), VisitsSchedule (parse-time env) and the values the tasks pass
each other through XCom."""

from __future__ import annotations

import runpy
from datetime import date

import pytest

from etlkit.common.errors import ConfigurationError
from etlkit.common.metrics import RunMetrics
from etlkit.visits.process import RemoteFile
from etlkit.visits.run import FileOutcomes, ListedReports, summarize
from etlkit.visits.settings import VisitsSchedule, VisitsSettings
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.visits

# The trigger-form Params of the DAG before the settings model (users' trigger configs use them).
PREVIOUS_PARAMS = {"reference_date", "file_pattern", "dry_run", "give_up_files"}


def resolve(**kwargs) -> VisitsSettings:
    kwargs.setdefault("environ", {})
    kwargs.setdefault("read_variable", False)
    return VisitsSettings.resolve(**kwargs)


def test_defaults():
    settings = resolve()
    assert (settings.remote_dir, settings.file_pattern, settings.backup_dir) == (
        "/home/vinkOS/archivosVisitas",
        r"^report_\d+\.txt$",
        "/home/etl/visitas/bckp",
    )
    assert (settings.min_file_age_s, settings.batch_rows, settings.max_line_chars) == (60, 10_000, 65_536)
    assert (settings.db_schema, settings.table_load_log, settings.view_monthly) == (
        "public",
        "load_log",
        "load_log_monthly",
    )
    assert (settings.reference_date, settings.dry_run) == (None, False)
    assert VisitsSchedule.resolve(environ={}) == VisitsSchedule(schedule="2 0 * * *", tz="UTC")


def test_an_unknown_key_in_the_variable_is_refused_naming_it():
    with pytest.raises(
        ConfigurationError, match=r"Variable sftp_visits_config: unknown keys \['remote_directory'\]"
    ):
        resolve(variable={"remote_directory": "x", "batch_rows": 5})


@pytest.mark.parametrize("key", ["sftp_conn_id", "postgres_conn_id"])
def test_a_connection_id_in_the_variable_is_refused_saying_where_it_went(key):
    """The connection ids were keys of the Variable: now they are operator arguments."""
    with pytest.raises(ConfigurationError, match=rf"'{key}' is no longer a setting: .*Migrating"):
        resolve(variable={key: "x", "batch_rows": 5})


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ({"table_visitor": 'visitor"; DROP TABLE x; --'}, "table_visitor (from Variable sftp_visits_config)"),
        ({"file_pattern": "report_("}, "file_pattern (from Variable sftp_visits_config): not a regex"),
        ({"batch_rows": 0}, "batch_rows (from Variable sftp_visits_config)"),
        ({"min_file_age_s": -1}, "min_file_age_s (from Variable sftp_visits_config)"),
    ],
)
def test_bad_values_are_refused_naming_field_and_source(variable, message):
    with pytest.raises(ConfigurationError) as raised:
        resolve(variable=variable)
    assert message in str(raised.value)
    assert "DROP TABLE" not in str(raised.value)


def test_env_then_variable_then_params_for_one_field():
    environ = {"SFTP_VISITS_DRY_RUN": "true", "SFTP_VISITS_BATCH_ROWS": "7"}
    assert resolve(environ=environ).dry_run is True
    assert resolve(environ=environ).batch_rows == 7
    assert resolve(environ=environ, variable={"dry_run": False}).dry_run is False
    context = {"params": {"dry_run": True, "reference_date": "2024-05-10"}}
    from_params = resolve(context=context, environ=environ, variable={"dry_run": False})
    assert (from_params.dry_run, from_params.reference_date) == (True, date(2024, 5, 10))
    # A null Param keeps the configured value.
    kept = resolve(context={"params": {"dry_run": None}}, variable={"dry_run": True})
    assert kept.dry_run is True


def test_run_only_params_are_not_settings():
    """file_pattern in the run's params narrows the Variable's pattern: it never replaces it."""
    settings = resolve(context={"params": {"file_pattern": r"^report_1\.txt$", "give_up_files": {}}})
    assert settings.file_pattern == r"^report_\d+\.txt$"


def test_the_dag_params_are_the_previous_ones(dag_bag):
    dag = dag_bag.get_dag("sftp_visits_to_postgres")
    assert set(dag.params) == PREVIOUS_PARAMS
    assert set(VisitsSettings.dag_params()) == {"reference_date", "dry_run"}
    assert set(VisitsSettings.RUN_PARAMS) <= PREVIOUS_PARAMS
    assert dag.params["dry_run"] is None and dag.params["reference_date"] is None
    assert dag.params["give_up_files"] == {}


def test_the_schedule_comes_from_env_where_the_dag_file_is_parsed(monkeypatch):
    monkeypatch.setenv("SFTP_VISITS_SCHEDULE", "15 3 * * *")
    monkeypatch.setenv("SFTP_VISITS_TZ", "America/Mexico_City")
    dag = runpy.run_path(str(REPO_ROOT / "dags" / "sftp_visits_to_postgres.py"))["dag"]
    assert dag.timetable.expression == "15 3 * * *"
    assert str(dag.timetable.timezone) == "America/Mexico_City"
    monkeypatch.setenv("SFTP_VISITS_TZ", "Mars/Olympus")
    with pytest.raises(ConfigurationError, match="tz .*not an IANA timezone name"):
        VisitsSchedule.resolve()


class FakeStore:
    def run_status_counts(self, run_id):
        return {"COMPLETED": 1}

    def stale_pending_loads(self):
        return []


def outcome(name: str, status: str, rows: int = 0) -> RunMetrics:
    return RunMetrics("visits", rows_read=rows, rows_loaded=rows, extra={"file": name, "status": status})


def test_xcom_values_round_trip_in_the_shape_published_before():
    listed = ListedReports((RemoteFile("report_1.txt", 10, 5), RemoteFile("report_2.txt", 20, 6)))
    assert listed.to_xcom() == [
        {"name": "report_1.txt", "size": 10, "mtime": 5},
        {"name": "report_2.txt", "size": 20, "mtime": 6},
    ]
    assert ListedReports.from_xcom(listed.to_xcom()) == listed
    outcomes = FileOutcomes((outcome("report_1.txt", "COMPLETED", 3),))
    assert outcomes.to_xcom() == [
        {
            "pipeline": "visits",
            "rows_read": 3,
            "rows_loaded": 3,
            "rows_rejected": 0,
            "bytes_read": 0,
            "extra": {"file": "report_1.txt", "status": "COMPLETED"},
        }
    ]
    assert FileOutcomes.from_xcom(outcomes.to_xcom()) == outcomes
    assert FileOutcomes.from_xcom(None) == FileOutcomes()


def test_summary_fails_the_run_for_a_file_not_loaded_or_a_listing_that_failed():
    listed = ListedReports((RemoteFile("report_1.txt", 1, 1), RemoteFile("report_2.txt", 1, 1)))
    done = FileOutcomes((outcome("report_1.txt", "COMPLETED", 3), outcome("report_2.txt", "DUPLICATE")))
    ok = summarize(listed, done, FakeStore(), "run")
    assert ok.failure is None
    assert ok.asset_extra() == {
        "rows_read": 3,
        "rows_loaded": 3,
        "rows_rejected": 0,
        "files_listed": 2,
        "statuses": {"COMPLETED": 1},
    }
    # process_files failed at report_1 (or never reached report_2): the run fails, naming them.
    failed = FileOutcomes((outcome("report_1.txt", "FAILED"),))
    assert (
        "{'report_1.txt': 'FAILED', 'report_2.txt': None}"
        in summarize(listed, failed, FakeStore(), "run").failure
    )
    # list_remote_files failed: no listing, process_files never ran (its outcomes are None).
    unlisted = summarize(None, FileOutcomes.from_xcom(None), FakeStore(), "run")
    assert unlisted.failure == "listing the remote files failed: see list_remote_files"
    assert unlisted.metrics["files_listed"] == 0


def test_connection_ids_are_templated_operator_arguments_set_in_the_dag(dag_bag):
    from airflow.sdk.definitions.xcom_arg import PlainXComArg

    dag = dag_bag.get_dag("sftp_visits_to_postgres")
    for task in dag.tasks:
        assert (task.postgres_conn_id, "postgres_conn_id" in task.template_fields) == (
            "postgres_visits",
            True,
        )
    for task_id in ("list_remote_files", "process_files"):
        task = dag.get_task(task_id)
        assert (task.sftp_conn_id, "sftp_conn_id" in task.template_fields) == ("sftp_visits", True)
    # summarize receives the two upstream outputs as arguments, not task-id strings.
    summarize = dag.get_task("summarize")
    assert isinstance(summarize.listed, PlainXComArg) and isinstance(summarize.outcomes, PlainXComArg)
    assert (summarize.listed.operator.task_id, summarize.listed.key) == ("list_remote_files", "return_value")
    assert (summarize.outcomes.operator.task_id, summarize.outcomes.key) == ("process_files", "file_outcomes")
    assert summarize.trigger_rule == "all_done"
