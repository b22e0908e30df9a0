"""execution_timeout covers the configured worst case: checked at parse time and at run time, and
the full-sync loop starts no batch that could outlast it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from airflow.sdk.exceptions import AirflowFailException

from etlkit.common.assets import SIGNUM_ITEMS
from etlkit.common.errors import ConfigurationError
from etlkit.sierra.budget import check_execution_timeout, parse_time_settings, worst_case_batch_seconds
from etlkit.sierra.settings import SierraSettings
from tests.sierra.conftest import DAG_ID, post_attempts
from tests.sierra.fixtures import build_catalogue, item_id

pytestmark = pytest.mark.sierra


def test_worst_case_of_a_batch_counts_every_attempt_timeout_and_wait():
    settings = SierraSettings(
        retry_attempts=3,
        retry_base_seconds=1,
        retry_max_seconds=10,
        get_timeout_seconds=5,
        post_timeout_seconds=20,
        statement_timeout_seconds=100,
    )
    get = 3 * 5 + 2 * 10
    post = 3 * 20 + 2 * (10 + get)  # a reconciliation GET before each re-send
    extract = 3 * 100 + (1.2 + 2.4)  # exponential waits with +20 % jitter
    assert worst_case_batch_seconds(settings) == pytest.approx(get + extract + post)
    # The defaults' batch (about 129 min) fits in the DAG's default execution_timeout.
    check_execution_timeout(timedelta(minutes=150), SierraSettings(), "the defaults")
    with pytest.raises(ConfigurationError, match="does not exceed the worst case of one batch"):
        check_execution_timeout(timedelta(minutes=60), SierraSettings(), "the defaults")


def dag_file_import_errors(monkeypatch, **env) -> dict:
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import REPO_ROOT

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return DagBag(dag_folder=str(REPO_ROOT / "dags" / "sierra_signum_item_sync.py")).import_errors


def test_parse_time_check_refuses_a_timeout_shorter_than_the_worst_case(dag_bag, monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_SIERRA_SYNC_SETTINGS", raising=False)
    assert dag_file_import_errors(monkeypatch) == {}
    assert dag_bag.get_dag(DAG_ID).get_task("sync_items").execution_timeout == timedelta(minutes=150)

    (error,) = dag_file_import_errors(monkeypatch, SIERRA_SYNC_EXECUTION_TIMEOUT_MINUTES="60").values()
    assert (
        "execution_timeout 3600 s does not exceed" in error
        and "SIERRA_SYNC_EXECUTION_TIMEOUT_MINUTES" in error
    )

    # The Variable given as an environment variable is checked too (no I/O needed to read it).
    settings = json.dumps({"statement_timeout_seconds": 3600})
    (error,) = dag_file_import_errors(
        monkeypatch, SIERRA_SYNC_EXECUTION_TIMEOUT_MINUTES="150", AIRFLOW_VAR_SIERRA_SYNC_SETTINGS=settings
    ).values()
    assert "AIRFLOW_VAR_SIERRA_SYNC_SETTINGS" in error and "statement_timeout_seconds" in error

    # So is a setting given as its own environment variable.
    monkeypatch.delenv("AIRFLOW_VAR_SIERRA_SYNC_SETTINGS")
    (error,) = dag_file_import_errors(monkeypatch, SIERRA_SYNC_POST_TIMEOUT_SECONDS="3000").values()
    assert "SIERRA_SYNC_*" in error and "does not exceed the worst case" in error

    # A Variable the sync could not run with stops the import too, naming the key.
    (error,) = dag_file_import_errors(
        monkeypatch,
        SIERRA_SYNC_POST_TIMEOUT_SECONDS="300",
        AIRFLOW_VAR_SIERRA_SYNC_SETTINGS='{"surprise": 1}',
    ).values()
    assert "unknown keys ['surprise']" in error


def test_parse_time_settings_are_the_runs_sources_without_params_or_io():
    environ = {
        "SIERRA_SYNC_RETRY_ATTEMPTS": "3",
        "SIERRA_SYNC_STATEMENT_TIMEOUT_SECONDS": "100",
        "AIRFLOW_VAR_SIERRA_SYNC_SETTINGS": json.dumps({"statement_timeout_seconds": 200}),
    }
    settings = parse_time_settings({"retry_attempts": 4, "get_timeout_seconds": 7}, environ)
    assert (settings.retry_attempts, settings.statement_timeout_seconds, settings.get_timeout_seconds) == (
        3,
        200,
        7,
    )
    assert parse_time_settings(environ={}) == SierraSettings()


def test_run_time_check_against_the_runs_settings_fails_before_any_io(run_task, sierra, backend):
    with pytest.raises(
        AirflowFailException,
        match=r"run's settings \(Variable sierra_sync_settings.*statement_timeout_seconds",
    ):
        run_task({"execution_timeout": timedelta(minutes=150)}, statement_timeout_seconds=3600)
    assert backend.requests == []


def test_no_batch_starts_that_could_outlast_the_timeout(run_task, sierra, backend, monkeypatch):
    """After two batches the worst case of another no longer fits: the run stops, and succeeds."""
    from etlkit.sierra import sync

    build_catalogue(sierra)
    worst_cases = iter([60.0, 10 * 3600.0])
    monkeypatch.setattr(sync, "worst_case_batch_seconds", lambda settings: next(worst_cases))

    summary = run_task({"execution_timeout": timedelta(hours=1)}, itype_null_fallback=0)
    assert summary["batches"] == 2 and not summary["full_sync_completed"]
    assert post_attempts(backend) == 2 and backend.last_synced_id() == item_id(20)
    assert run_task.outlet_events[SIGNUM_ITEMS].extra == {
        "dry_run": False,
        "mode": "SYNC_FULL",
        "batches": 2,
        "rows": 20,
        "full_sync_completed": False,
    }


def test_one_extraction_attempt_shares_its_statement_timeout(run_task, sierra, backend, monkeypatch):
    """Each statement gets what is left of statement_timeout_seconds, so an attempt cannot last
    several times the setting (the worst case above counts it once per attempt)."""
    import threading

    from etlkit.sierra.extract import SierraSnapshot

    build_catalogue(sierra, items=5)
    real_materialise = SierraSnapshot.materialise

    def slow_materialise(self, selection):
        real_materialise(self, selection)
        # The attempt's 1 s is used up before the batch facts are read (time.sleep is the fixture's).
        threading.Event().wait(1.2)

    monkeypatch.setattr(SierraSnapshot, "materialise", slow_materialise)
    with pytest.raises(AirflowFailException, match="statement timeout"):
        run_task(statement_timeout_seconds=1)
    assert post_attempts(backend) == 0
