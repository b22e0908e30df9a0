"""Full-sync loop rules, the DAG's shape, dry runs, and memory that does not grow with the batch."""

from __future__ import annotations

import gzip
import json
import logging
import tracemalloc
from datetime import timedelta

import pytest
from airflow.sdk.exceptions import AirflowFailException

from dev.sierra_data import generate
from tests.sierra.conftest import DAG_ID, data_ids, post_attempts, posted_files
from tests.sierra.fixtures import build_catalogue, item_id

pytestmark = pytest.mark.sierra


def test_dag_shape(dag_bag):
    dag = dag_bag.get_dag(DAG_ID)
    assert dag.schedule == timedelta(seconds=60) or str(dag.timetable.summary) == "0:01:00"
    assert dag.catchup is False and dag.max_active_runs == 1
    assert [t.task_id for t in dag.tasks] == ["sync_items"]
    task = dag.get_task("sync_items")
    assert task.retries == 0 and task.execution_timeout == timedelta(minutes=150)
    assert (task.sierra_conn_id, task.backend_conn_id, task.settings_defaults) == (
        "sierra_dna",
        "signum_backend",
        {},
    )
    assert dag.default_args["owner"] == "data-eng" and dag.tags and dag.doc_md


def test_the_sierra_db_pool_is_opt_in(dag_bag, monkeypatch):
    """Airflow never schedules a task in a pool that does not exist: unset, the task keeps the
    default pool; a deployment that created ``sierra_db`` names it in SIERRA_SYNC_POOL."""
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import REPO_ROOT

    assert dag_bag.get_dag(DAG_ID).get_task("sync_items").pool == "default_pool"
    monkeypatch.setenv("SIERRA_SYNC_POOL", "sierra_db")
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "sierra_signum_item_sync.py"))
    assert not bag.import_errors
    assert bag.get_dag(DAG_ID).get_task("sync_items").pool == "sierra_db"


def test_bounded_run_resumes_where_the_backend_says(run_task, sierra, backend):
    build_catalogue(sierra)
    first = run_task(max_batches_per_run=2, itype_null_fallback=0)
    assert first["batches"] == 2 and not first["full_sync_completed"]
    assert backend.sync_mode == "SYNC_FULL" and backend.last_synced_id() == item_id(20)

    second = run_task(itype_null_fallback=0)
    assert second["batches"] == 1 and second["full_sync_completed"] and second["rows"] == 5
    assert [len(data_ids(f)) for f in posted_files(backend)] == [10, 10, 5]
    assert backend.sync_changes_since.isoformat() == first["timestamps"][0]


def test_the_max_batches_param_bounds_one_run(run_task, sierra, backend):
    build_catalogue(sierra)
    summary = run_task(
        params={"max_batches": 1, "dry_run_dir": None}, max_batches_per_run=5, itype_null_fallback=0
    )
    assert summary["batches"] == 1 and backend.last_synced_id() == item_id(10)


def etl_metrics(caplog) -> list[dict]:
    return [
        json.loads(r.getMessage().split("ETL_METRICS ", 1)[1])
        for r in caplog.records
        if r.getMessage().startswith("ETL_METRICS ")
    ]


def test_a_run_emits_one_etl_metrics_line_with_the_items_posted(run_task, sierra, backend, caplog):
    caplog.set_level(logging.INFO)
    build_catalogue(sierra, items=25)
    run_task(max_batches_per_run=2, itype_null_fallback=0)
    (metrics,) = etl_metrics(caplog)
    posted = sum(len(data_ids(f)) for f in posted_files(backend))
    assert (metrics["pipeline"], metrics["rows_read"], metrics["rows_loaded"]) == ("sierra", 20, posted)
    assert metrics["extra"]["batches"] == 2 and metrics["extra"]["dry_run"] is False


def test_a_dry_run_reports_nothing_loaded(run_task, sierra, backend, caplog, tmp_path):
    caplog.set_level(logging.INFO)
    build_catalogue(sierra, items=12)
    run_task(params={"dry_run_dir": str(tmp_path)}, itype_null_fallback=0)
    (metrics,) = etl_metrics(caplog)
    assert (metrics["rows_read"], metrics["rows_loaded"], metrics["extra"]["dry_run"]) == (10, 0, True)


def test_exact_multiple_ends_with_a_header_only_batch(run_task, sierra, backend):
    build_catalogue(sierra, items=20)
    summary = run_task(itype_null_fallback=0)
    assert [len(data_ids(f)) for f in posted_files(backend)] == [10, 10, 0]
    assert summary["full_sync_completed"] and backend.sync_mode == "SYNC_CHANGES"


def test_upserted_count_mismatch_fails_the_run(run_task, sierra, backend, monkeypatch):
    from etlkit.hooks.signum import SignumBackendHook

    real_post = SignumBackendHook.post_sync
    monkeypatch.setattr(
        SignumBackendHook, "post_sync", lambda self, *a: {"upserted": real_post(self, *a)["upserted"] - 1}
    )
    build_catalogue(sierra, items=5)
    with pytest.raises(AirflowFailException, match="upserted 4 rows but the file has 5"):
        run_task(itype_null_fallback=0)
    assert post_attempts(backend) == 1


def test_dry_run_writes_the_file_and_posts_nothing(run_task, sierra, backend, tmp_path):
    build_catalogue(sierra, items=12)
    summary = run_task(params={"dry_run_dir": str(tmp_path)}, itype_null_fallback=0)
    assert post_attempts(backend) == 0 and summary["rows"] == 10
    text = gzip.decompress((tmp_path / summary["dry_run_file"].rsplit("/", 1)[1]).read_bytes()).decode()
    assert data_ids(text) == [item_id(n) for n in range(1, 11)]


def test_python_memory_does_not_grow_with_the_batch(sierra, sync_env, tmp_path):
    from etlkit.hooks.sierra import SierraHook
    from etlkit.sierra.extract import Selection

    peaks = []
    for items in (5_000, 50_000):
        generate(sierra, items)
        tracemalloc.start()
        with SierraHook("sierra_dna").snapshot(300) as snap:
            rows = snap.copy_rows(Selection("SYNC_FULL", 0, items), tmp_path / "data.tsv.gz", None)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert rows == items
        sierra.execute(
            "TRUNCATE sierra_view.record_metadata, sierra_view.item_record, "
            "sierra_view.item_record_property, sierra_view.bib_record_item_record_link, "
            "sierra_view.bib_record_property, sierra_view.subfield"
        )
    assert max(peaks) < 8 * 2**20, peaks  # MiB-scale, while the 50k-row file is several MB
    assert peaks[1] < peaks[0] * 2 + 2**20, peaks  # 10x the rows, about the same peak
