"""Every pipeline DAG and one declarative job, triggered through REST API v2 with params on the
CeleryExecutor stack (two workers, no local disk shared): each run succeeds, the targets hold what
the generated input says they must and what one ``dag.test()`` run of the same input gives
(``tests/stack/reference.py``), and a table records which worker ran each task."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from dev import jobs_data, pgdb
from dev.stack import ENDERTURING_DAYS, JOBS_DAY, MOVIES_FILMS, VISIT_REPORTS, WORKERS
from tests.stack.reference import (
    VISITS_REFERENCE_DATE,
    enderturing_state,
    movies_state,
    orders_state,
    reference,  # noqa: F401 - the fixture
    sierra_state,
    visits_state,
)

# dag_id -> (conf, logical_date): one manual run each, with params.
RUNS = {
    "sftp_visits_to_postgres": ({"reference_date": VISITS_REFERENCE_DATE}, None),
    "sierra_signum_item_sync": ({"max_batches": 50}, None),
    "enderturing_to_warehouse": (
        {"run_resync": False},
        f"{ENDERTURING_DAYS[-1] + timedelta(days=1)}T03:00:00Z",
    ),
    "movies_postgres_to_elasticsearch": ({}, None),
    "orders_daily_load": ({}, f"{JOBS_DAY}T04:30:00Z"),
}
# What the demo file orders_<day>.csv gives: 1002 is cancelled, 1004 and 1005 are rejects.
LOADED_ORDERS = {1001, 1003, 1006}


def worker_table(dag_id: str, run_id: str, tis: list[dict]) -> str:
    lines = [
        f"### {dag_id} — {run_id}",
        "",
        "| task | map index | try | worker | state |",
        "|---|---|---|---|---|",
    ]
    for ti in tis:
        lines.append(
            f"| {ti['task_id']} | {ti['map_index']} | {ti['try_number']} | {ti['hostname'] or '-'} | {ti['state']} |"
        )
    return "\n".join(lines) + "\n"


def count(dbname: str, query: str, params=()) -> int:
    with psycopg.connect(pgdb.dsn(dbname)) as conn:
        return conn.execute(query, params).fetchone()[0]


def reference_states(reference) -> dict[str, object]:  # noqa: F811 - the fixture
    """One ``dag.test()`` run per pipeline on the same input, into targets of its own."""
    return {
        "sftp_visits_to_postgres": reference.visits(),
        "sierra_signum_item_sync": reference.sierra(RUNS["sierra_signum_item_sync"][0]),
        "enderturing_to_warehouse": reference.enderturing(
            ENDERTURING_DAYS[-1], RUNS["enderturing_to_warehouse"][0]
        ),
        "movies_postgres_to_elasticsearch": reference.movies(RUNS["movies_postgres_to_elasticsearch"][0]),
        "orders_daily_load": reference.orders(),
    }


def stack_states(stack) -> dict[str, object]:
    layout = stack.layout
    return {
        "sftp_visits_to_postgres": visits_state(
            layout.database("visits"), [f"report_{n}.txt" for n in VISIT_REPORTS]
        ),
        "sierra_signum_item_sync": sierra_state(stack.systems.signum),
        "enderturing_to_warehouse": enderturing_state(layout.database("enderturing"), ENDERTURING_DAYS[-1]),
        "movies_postgres_to_elasticsearch": movies_state(stack.systems.elasticsearch),
        "orders_daily_load": orders_state(layout.database("jobs"), layout.jobs_data_root, JOBS_DAY),
    }


def test_every_pipeline_runs_on_two_celery_workers(stack, stack_output: Path, reference):  # noqa: F811
    layout = stack.layout
    today = datetime.now(UTC).date()
    # Unpausing also makes the scheduler start each DAG's latest scheduled run (catchup=False): give
    # the job's schedule the inputs of those days too, so that run has its file.
    for day in (today, today - timedelta(days=1)):
        jobs_data.write_orders_export(layout.jobs_data_root, day)

    run_ids = {}
    for dag_id, (conf, logical_date) in RUNS.items():
        run_ids[dag_id] = stack.trigger(dag_id, conf, logical_date)
        stack.unpause(dag_id)
    # While the stack runs them: the same runs with dag.test(), one process, into second targets.
    started = time.monotonic()
    references = reference_states(reference)
    reference_s = time.monotonic() - started

    tables, crossed = [], []
    for dag_id, run_id in run_ids.items():
        run = stack.wait(dag_id, run_id)
        tis = stack.task_instances(dag_id, run_id)
        tables.append(worker_table(dag_id, run_id, tis))
        assert run["state"] == "success", f"{dag_id}: {run['state']}\n{tables[-1]}"
        assert run["conf"] == RUNS[dag_id][0]
        ran = [ti for ti in tis if ti["state"] == "success"]
        assert {ti["hostname"] for ti in ran} <= set(WORKERS), tables[-1]
        if any(a["hostname"] != b["hostname"] for a, b in zip(ran, ran[1:], strict=False)):
            crossed.append(dag_id)
    report = "\n".join(tables)
    (stack_output / "workers_by_task.md").write_text(report)
    print("\n" + report)
    assert crossed, "no run put two consecutive tasks on different workers"

    # Only this test's files: other stack tests load visit files of their own.
    own_files = [f"report_{n}.txt" for n in sorted(VISIT_REPORTS)]
    visits_db = layout.database("visits")
    with psycopg.connect(pgdb.dsn(visits_db)) as conn:
        statuses = conn.execute(
            "SELECT file_name, status FROM load_log WHERE file_name = ANY(%s) ORDER BY file_name",
            (own_files,),
        ).fetchall()
        loaded = conn.execute(
            "SELECT coalesce(sum(rows_loaded), 0) FROM load_log WHERE file_name = ANY(%s)", (own_files,)
        ).fetchone()[0]
        statistics = conn.execute(
            "SELECT count(*) FROM statistics WHERE source_file = ANY(%s)", (own_files,)
        ).fetchone()[0]
    assert statuses == [(name, "COMPLETED") for name in own_files]
    assert statistics == loaded > 0  # every file loaded exactly once
    assert not [name for name in own_files if (layout.remote_visits_dir / name).exists()]

    items = count(layout.database("sierra"), "SELECT count(*) FROM sierra_view.item_record")
    assert len(stack.systems.signum.state.items) == items > 0

    day = ENDERTURING_DAYS[-1]
    expected = sum(1 for s in stack.systems.enderturing.dataset.sessions if s["start_dt"][:10] == str(day))
    sessions = count(
        layout.database("enderturing"),
        "SELECT count(*) FROM enderturing.sessions WHERE start_dt::date = %s",
        (day,),
    )
    assert sessions == expected > 0

    assert stack.systems.elasticsearch.cluster.count("movies", {})["count"] == MOVIES_FILMS

    with psycopg.connect(pgdb.dsn(layout.database("jobs"))) as conn:
        orders = {row[0] for row in conn.execute("SELECT order_id FROM sales.orders")}
    assert orders == LOADED_ORDERS

    # What one dag.test() run of the same input gives, pipeline by pipeline.
    actual = stack_states(stack)
    for dag_id, state in references.items():
        assert actual[dag_id] == state, f"{dag_id}: the stack's target differs from one dag.test() run"
    (stack_output / "reference_runs.txt").write_text(
        f"one dag.test() run per pipeline, in-process while the stack ran: {reference_s:.0f} s; "
        + ", ".join(f"{dag_id}: equal" for dag_id in references)
        + "\n"
    )
