"""The DAG end to end with dag.test(): full sync over several batches, then changes runs."""

from __future__ import annotations

import json
import logging
import tempfile
from datetime import datetime
from pathlib import Path

import pytest

from dev.sierra_data import bib_id, item_id, touch
from tests.conftest import task_states
from tests.sierra.conftest import API_KEY, DAG_ID, data_ids, posted_files, sierra_sessions
from tests.sierra.fixtures import LINKS, build_catalogue, expected_rows, stored_rows

pytestmark = pytest.mark.sierra


def xcom_values(dag_run) -> list:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=DAG_ID, run_id=dag_run.run_id).all()
        values = [row.value for row in rows]
    assert values, "the sync task returns its summary as XCom"
    return values


def test_without_the_settings_variable_the_defaults_apply(run_dag, sierra, backend, sync_env, monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_SIERRA_SYNC_SETTINGS")
    build_catalogue(sierra)
    sierra.execute("UPDATE sierra_view.item_record SET itype_code_num = 1 WHERE itype_code_num IS NULL")

    dr = run_dag(DAG_ID)

    assert dr.state == "success", task_states(dr)
    assert backend.sync_mode == "SYNC_CHANGES" and len(backend.items) == 25
    (summary,) = [v for v in xcom_values(dr) if isinstance(v, dict) and "batches" in v]
    assert summary["batches"] == 3  # up to max_batches_per_run (10) batches: the whole full sync


# Each batch on one connection, then cut into up to three parts copied side by side.
PARALLEL_EXTRACTION = {"extract_parallelism": 3, "extract_min_items_per_part": 2}


@pytest.mark.parametrize("extraction", [{}, PARALLEL_EXTRACTION], ids=["one-connection", "in-parts"])
def test_full_sync_then_item_and_bib_changes(run_dag, sierra, backend, sync_env, caplog, extraction):
    sync_env(itype_null_fallback=0, **extraction)
    build_catalogue(sierra)
    caplog.set_level(logging.DEBUG)
    temp_dirs_before = set(Path(tempfile.gettempdir()).glob("sierra-sync-*"))

    dr = run_dag(DAG_ID)
    assert dr.state == "success", task_states(dr)
    assert set(Path(tempfile.gettempdir()).glob("sierra-sync-*")) == temp_dirs_before  # the work dir is gone
    assert API_KEY not in json.dumps(xcom_values(dr), default=str)
    files = posted_files(backend)
    assert [len(data_ids(f)) for f in files] == [10, 10, 5]
    assert backend.sync_mode == "SYNC_CHANGES"
    assert stored_rows(backend.items) == expected_rows(sierra, fallback=0)
    posted_timestamps = [r["timestamp"] for r in backend.requests if r["method"] == "POST"]
    assert backend.sync_changes_since == datetime.fromisoformat(posted_timestamps[0])
    assert posted_timestamps == sorted(posted_timestamps) and len(set(posted_timestamps)) == 3
    assert all(t.endswith("+00:00") for t in posted_timestamps)
    first_post = next(r for r in backend.requests if r["method"] == "POST")
    assert first_post["parts"] == ["file", "timestamp"]
    assert (first_post["filename"], first_post["content_type"]) == ("data.tsv.gz", "application/gzip")
    assert "x-api-key" in first_post["headers"] and "authorization" not in first_post["headers"]
    # Spot checks of the derivation rules, beyond the reference query.
    assert backend.items[item_id(5)]["bib_record_id"] == bib_id(103)  # greatest of three bibs
    assert backend.items[item_id(5)]["best_title"] == "Highest bib id"
    assert backend.items[item_id(7)]["bib_record_id"] is None
    assert backend.items[item_id(7)]["shelfmark_json"] is None
    assert backend.items[item_id(9)]["itype_code_num"] == 0
    assert backend.items[item_id(4)]["best_title"].startswith("Tab\there")
    assert sierra_sessions(sierra) == 0
    assert "Sierra snapshot: db_now" in caplog.text, "the task's log is captured"
    assert API_KEY not in caplog.text

    # Item 3 changes, bib 101 changes, a bib-less item changes.
    sierra.execute(
        "UPDATE sierra_view.item_record_property SET barcode = 'NEW-3' WHERE item_record_id = %s",
        (item_id(3),),
    )
    sierra.execute(
        "UPDATE sierra_view.bib_record_property SET best_title = 'Uusi nimi' WHERE id = %s", (bib_id(101),)
    )
    now = sierra.execute("SELECT now()").fetchone()[0]
    for record in (item_id(3), bib_id(101), item_id(18)):
        touch(sierra, record, now)
    requests_before = len(backend.requests)

    dr = run_dag(DAG_ID)
    assert dr.state == "success", task_states(dr)
    changes = posted_files(backend)[3:]
    assert len(changes) == 1
    linked_to_101 = [item_id(n) for n, bibs in LINKS.items() if 101 in bibs]
    # Every item linked to the changed bib is re-sent, item 5 too although its chosen bib is 103.
    assert item_id(5) in linked_to_101
    assert data_ids(changes[0]) == sorted({item_id(3), item_id(18), *linked_to_101})
    assert backend.items[item_id(3)]["barcode"] == "NEW-3"
    assert all(backend.items[i]["best_title"] == "Uusi nimi" for i in linked_to_101 if i != item_id(5))
    assert stored_rows(backend.items) == expected_rows(sierra, fallback=0)
    last_post = [r for r in backend.requests[requests_before:] if r["method"] == "POST"][-1]
    assert backend.sync_changes_since == datetime.fromisoformat(last_post["timestamp"])

    # Nothing changed since: the next changes run posts a header-only file (overlap aside).
    dr = run_dag(DAG_ID)
    assert dr.state == "success", task_states(dr)
    assert backend.sync_mode == "SYNC_CHANGES"
    assert sierra_sessions(sierra) == 0
