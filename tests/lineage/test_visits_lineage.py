"""Lineage of the visits DAG: the SFTP files → statistics, errors, visitor, with schema and row counts."""

from __future__ import annotations

import pytest

from dev.pgdb import PG_HOST, PG_PORT
from dev.visits_data import write_report
from tests.conftest import task_states
from tests.lineage.conftest import completed_tasks, datasets

pytestmark = pytest.mark.visits


def test_visits_run_reports_files_in_and_tables_out(visits, lineage_events, sshd, pg_database):
    for n in (1, 2):
        path = write_report(visits.root / "gen" / f"report_{n}.txt", 50, seed=n, invalid_every=10)
        visits.put(path.name, path.read_bytes())

    dag_run = visits.run()

    assert dag_run.state == "success", task_states(dag_run)
    loads = visits.loads()
    loaded = sum(rows[0][2] for rows in loads.values())
    rejected = sum(rows[0][3] for rows in loads.values())
    assert rejected > 0
    event = completed_tasks(lineage_events())["process_files"]
    host = sshd.connection()["host"]
    port = sshd.connection()["port"]
    assert sorted(datasets(event, "inputs")) == [
        f"sftp://{host}:{port}/{visits.remote}/report_1.txt",
        f"sftp://{host}:{port}/{visits.remote}/report_2.txt",
    ]
    report = next(iter(datasets(event, "inputs").values()))
    assert [f["name"] for f in report["facets"]["schema"]["fields"]][:2] == ["email", "column 2"]
    outputs = datasets(event, "outputs")
    prefix = f"postgres://{PG_HOST}:{PG_PORT}/{pg_database}.{visits.schema}"
    assert sorted(outputs) == [f"{prefix}.errors", f"{prefix}.statistics", f"{prefix}.visitor"]
    rows = {
        name.rsplit(".", 1)[1]: d["outputFacets"].get("outputStatistics", {}).get("rowCount")
        for name, d in outputs.items()
    }
    # Each load upserts every e-mail it has a dated visit for.
    upserted = visits.scalar(
        "SELECT count(DISTINCT (load_id, email)) FROM statistics WHERE fecha_open IS NOT NULL"
    )
    assert rows == {"statistics": loaded, "errors": rejected, "visitor": upserted} and upserted > 0
    statistics_columns = [f["name"] for f in outputs[f"{prefix}.statistics"]["facets"]["schema"]["fields"]]
    assert "email" in statistics_columns and "source_file" in statistics_columns
