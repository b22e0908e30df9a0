"""Lineage on for one test: the OpenLineage listener with the file transport.

The session's Airflow has no transport configured, so the provider's plugin registered no
listener (lineage off, the default). A test that wants lineage configures the file transport and
adds the provider's own listener to the task SDK's listener manager, and removes it afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _clear_provider_caches() -> None:
    from airflow.providers.openlineage import conf

    for name in dir(conf):
        cache_clear = getattr(getattr(conf, name), "cache_clear", None)
        if cache_clear:
            cache_clear()


@pytest.fixture
def lineage_events(tmp_path, monkeypatch):
    """Returns a function reading the events written so far (COMPLETE task events by job name)."""
    log_file = tmp_path / "openlineage.jsonl"
    transport = {"type": "file", "log_file_path": str(log_file), "append": True}
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps(transport))
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD", "True")
    _clear_provider_caches()
    from airflow.providers.openlineage.plugins.listener import OpenLineageListener
    from airflow.sdk.listener import get_listener_manager

    listener = OpenLineageListener()
    manager = get_listener_manager()
    manager.add_listener(listener)
    try:
        yield lambda: read_events(log_file)
    finally:
        manager.pm.unregister(listener)
        monkeypatch.undo()
        _clear_provider_caches()


def read_events(log_file: Path) -> list[dict]:
    if not log_file.exists():
        return []
    return [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]


def completed_tasks(events: list[dict]) -> dict[str, dict]:
    """``{task_id: COMPLETE event}`` of the task runs (job name ``dag.task``)."""
    found = {}
    for event in events:
        if event["eventType"] == "COMPLETE" and "." in event["job"]["name"]:
            found[event["job"]["name"].split(".", 1)[1]] = event
    return found


def datasets(event: dict, side: str) -> dict[str, dict]:
    """``{namespace/name: dataset}`` of an event's ``inputs`` or ``outputs``."""
    return {f"{d['namespace']}/{d['name']}": d for d in event.get(side) or []}


from tests.enderturing.conftest import et_airflow, et_database, fake_et, warehouse  # noqa: E402,F401
from tests.jobs.conftest import jobs_db, jobs_dsn, jobs_env  # noqa: E402,F401
from tests.movies.conftest import (  # noqa: E402,F401
    clean_state,
    es_factory,
    es_server,
    generated_source,
    movies_connections,
    source_conn,
    source_db,
)
from tests.sierra.conftest import backend, backend_server, sierra, sierra_dbname, sync_env  # noqa: E402,F401
from tests.visits.conftest import visits, visits_sandbox  # noqa: E402,F401  (the visits fixtures)


def asset_extras(dag_run) -> dict[str, dict]:
    """``{asset uri: extra}`` of the asset events this run emitted."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.uri, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_dag_id == dag_run.dag_id, AssetEvent.source_run_id == dag_run.run_id)
        ).all()
    return {uri: extra for uri, extra in rows}


def row_counts(event: dict) -> dict[str, int | None]:
    """``{namespace/name: rowCount}`` of an event's outputs."""
    return {
        key: (d.get("outputFacets") or {}).get("outputStatistics", {}).get("rowCount")
        for key, d in datasets(event, "outputs").items()
    }


def schema_names(dataset: dict) -> list[str]:
    return [f["name"] for f in dataset["facets"]["schema"]["fields"]]
