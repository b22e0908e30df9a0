"""A visits run emits its asset event with the run's counts, and queues the job scheduled on it."""

from __future__ import annotations

import pytest

from dev.visits_data import write_report
from tests.conftest import task_states

pytestmark = pytest.mark.visits

JOB_DAG = "visitor_report_after_load"
VISITS_URI = "x-etlkit://postgres_visits/visits"


@pytest.fixture
def job_dag_unpaused(dag_bag):
    """The DAGs in the metadata DB as the dag-processor writes them, the job's DAG unpaused."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(dag_bag, "dags-folder", None)
    with create_session() as session:
        session.get(DagModel, JOB_DAG).is_paused = False
    yield
    with create_session() as session:
        session.get(DagModel, JOB_DAG).is_paused = True


def test_visits_run_emits_asset_event_and_queues_the_visitor_report(visits, job_dag_unpaused):
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    path = write_report(visits.root / "gen" / "report_1.txt", 40, seed=3, invalid_every=8)
    visits.put(path.name, path.read_bytes())

    dag_run = visits.run()

    assert dag_run.state == "success", task_states(dag_run)
    [(_, _, loaded, rejected)] = visits.loads()["report_1.txt"]
    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.uri == VISITS_URI))
        events = session.scalars(
            select(AssetEvent).where(
                AssetEvent.asset_id == asset.id, AssetEvent.source_run_id == dag_run.run_id
            )
        ).all()
        assert [(e.source_dag_id, e.source_task_id) for e in events] == [
            ("sftp_visits_to_postgres", "summarize")
        ]
        extra = events[0].extra
        assert (extra["rows_read"], extra["rows_loaded"], extra["rows_rejected"]) == (40, loaded, rejected)
        assert extra["files_listed"] == 1 and extra["statuses"] == {"COMPLETED": 1}
        queued = session.scalars(
            select(AssetDagRunQueue.target_dag_id).where(AssetDagRunQueue.asset_id == asset.id)
        )
        assert list(queued) == [JOB_DAG]
        # What the scheduler asks before creating asset-triggered runs: the job's DAG is due.
        _, triggered = DagModel.dags_needing_dagruns(session)
        assert JOB_DAG in triggered
