"""Lineage (file transport) and asset events of one run of each pipeline but visits (see its own file)."""

from __future__ import annotations

import json

import pytest

from dev import jobs_data
from dev.pgdb import PG_HOST, PG_PORT
from tests.conftest import task_states
from tests.enderturing.conftest import LOGICAL_DATE as ET_LOGICAL_DATE
from tests.enderturing.test_dag_end_to_end import expected_counts
from tests.jobs.conftest import query
from tests.jobs.test_examples_e2e import LOGICAL_DATE as JOBS_LOGICAL_DATE
from tests.lineage.conftest import asset_extras, completed_tasks, datasets, row_counts, schema_names
from tests.movies.conftest import run_movies
from tests.sierra.fixtures import build_catalogue

POSTGRES = f"postgres://{PG_HOST}:{PG_PORT}"


@pytest.mark.sierra
def test_sierra_view_to_the_signum_endpoint(
    run_dag, sierra, sierra_dbname, backend, backend_server, sync_env, lineage_events
):
    sync_env(itype_null_fallback=0)
    build_catalogue(sierra)

    dag_run = run_dag("sierra_signum_item_sync")

    assert dag_run.state == "success", task_states(dag_run)
    event = completed_tasks(lineage_events())["sync_items"]
    inputs = datasets(event, "inputs")
    assert f"{POSTGRES}/{sierra_dbname}.sierra_view.item_record" in inputs
    assert "itype_code_num" in " ".join(
        schema_names(inputs[f"{POSTGRES}/{sierra_dbname}.sierra_view.item_record"])
    )
    endpoint = f"http://127.0.0.1:{backend_server.port}//sync"
    extra = asset_extras(dag_run)["x-etlkit://signum_backend/sync"]
    assert extra["rows"] > 0 and extra["dry_run"] is False
    assert row_counts(event) == {endpoint: extra["rows"]}
    assert schema_names(datasets(event, "outputs")[endpoint])[:2] == ["item_record_id", "item_number"]


@pytest.mark.enderturing
def test_enderturing_api_to_the_warehouse_tables(
    run_dag, et_airflow, et_database, warehouse, fake_et, lineage_events
):
    dag_run = run_dag("enderturing_to_warehouse", logical_date=ET_LOGICAL_DATE)

    assert dag_run.state == "success", task_states(dag_run)
    expected = expected_counts(et_airflow.dataset)
    tasks = completed_tasks(lineage_events())
    _, server = fake_et
    written = {}
    for task_id in ("refresh_dictionaries", "sync_sessions"):
        event = tasks[task_id]
        assert datasets(event, "inputs") and all(
            key.startswith(server.url + "/") for key in datasets(event, "inputs")
        )
        for key, rows in row_counts(event).items():
            written[key.rsplit(".", 1)[1]] = rows
            assert key.startswith(f"{POSTGRES}/{et_database}.enderturing.")
    assert written == expected
    sessions = datasets(tasks["sync_sessions"], "outputs")[f"{POSTGRES}/{et_database}.enderturing.sessions"]
    assert {"id", "start_dt", "agent_id"} <= set(schema_names(sessions))
    extra = asset_extras(dag_run)["x-etlkit://enderturing_warehouse/enderturing"]
    assert extra["sessions"] == expected["sessions"]
    assert {t: c["inserted"] + c["updated"] for t, c in extra["tables"].items()} == {
        t: n for t, n in expected.items() if t.startswith("sessions")
    }


@pytest.mark.movies
def test_content_schema_to_the_movies_index(
    run_dag, movies_connections, source_db, generated_source, clean_state, lineage_events
):
    dag_run = run_movies(run_dag)

    assert dag_run.state == "success", task_states(dag_run)
    event = completed_tasks(lineage_events())["sync"]
    inputs = datasets(event, "inputs")
    assert sorted(inputs) == sorted(
        f"{POSTGRES}/{source_db}.content.{t}"
        for t in ("film_work", "genre", "person", "genre_film_work", "person_film_work")
    )
    assert "title" in schema_names(inputs[f"{POSTGRES}/{source_db}.content.film_work"])
    films = generated_source.execute("SELECT count(*) FROM content.film_work").fetchone()[0]
    index = f"elasticsearch://127.0.0.1:{movies_connections.port}/movies"
    assert row_counts(event) == {index: films}
    assert "title" in schema_names(datasets(event, "outputs")[index])
    extra = asset_extras(dag_run)["x-etlkit://movies_elasticsearch/movies"]
    assert (extra["mode"], extra["rows_loaded"]) == ("full", films)


@pytest.mark.jobs
def test_declarative_job_sources_to_sinks(run_dag, jobs_env, jobs_db, lineage_events):
    dsn, data_root = jobs_env["dsn"], jobs_env["data_root"]
    jobs_data.write_customers(data_root)
    query(dsn, "DELETE FROM sales.orders WHERE order_id IN (2001, 2002) RETURNING 1")
    query(
        dsn,
        "INSERT INTO sales.orders VALUES (2001, 'C01', 'new', 2, 19.90, '2025-03-01'), "
        "(2002, 'C02', 'new', 1, 5.00, '2025-03-02') RETURNING 1",
    )

    dag_run = run_dag("customer_revenue_daily", logical_date=JOBS_LOGICAL_DATE)

    assert dag_run.state == "success", task_states(dag_run)
    tasks = completed_tasks(lineage_events())
    assert list(datasets(tasks["read_orders"], "inputs")) == [f"{POSTGRES}/{jobs_db}.sales.orders"]
    customers = datasets(tasks["read_customers"], "inputs")
    assert list(customers) == [f"file/{data_root}/crm/customers.json"]
    assert schema_names(next(iter(customers.values()))) == ["customer_id", "region"]
    regions = len(query(dsn, "SELECT DISTINCT region FROM sales.region_revenue"))
    assert row_counts(tasks["load_region_revenue"]) == {f"{POSTGRES}/{jobs_db}.sales.region_revenue": regions}
    assert row_counts(tasks["publish_report"]) == {
        f"file/{data_root}/reports/revenue_by_region_20250302.json": regions
    }
    extras = asset_extras(dag_run)
    assert extras["x-etlkit://jobs/customer_revenue_daily/load_region_revenue"] == {"rows_written": regions}
    assert json.loads(json.dumps(extras))  # plain JSON
