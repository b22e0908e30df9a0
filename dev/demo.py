"""``make demo``: every pipeline once on the repo's generated demo data, then one summary table.

Starts what each pipeline talks to on this machine — a real sshd serving visit reports
(``dev.visits_data``, plus the real samples when ``../shared/data/visits`` exists), the local Signum
backend, the fake Ender Turing API, the Elasticsearch-subset server — and one database per pipeline
on the local PostgreSQL; runs each DAG with ``airflow dags test`` in one isolated AIRFLOW_HOME
(connections and Variables given as ``AIRFLOW_CONN_*`` / ``AIRFLOW_VAR_*`` env), stops every server
it started, and prints what each DAG loaded. Exits 1 when any DAG failed.

``python -m dev.demo [visits sierra enderturing movies jobs]`` runs a subset. The databases stay
afterwards for inspection (each run recreates them); each DAG's output is in ``<workspace>/logs/``
(``DEMO_VERBOSE=1`` shows it on the terminal instead).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import psycopg

from dev import jobs_data, movies_data, pgdb, sierra_data
from dev.airflow_env import REPO_ROOT, airflow_environment, connection_env, migrate_metadata_db, variable_env
from dev.enderturing_server import FakeEnderTuring, generate_dataset, start_server
from dev.es_server import EsSubsetServer
from dev.signum_server import BackendState, SignumServer
from dev.sshd import start_sshd
from dev.visits_data import write_report

DEMO_DB = "etlkit_demo"  # the visits target; dev/ui.py points its connection here
SIERRA_DB = "etlkit_demo_sierra"
ENDERTURING_DB = "etlkit_demo_enderturing"
MOVIES_DB = "etlkit_demo_movies"
JOBS_DB = "etlkit_demo_jobs"
SAMPLE_REPORTS = REPO_ROOT.parent / "shared" / "data" / "visits"

VISIT_REPORT_ROWS = 2000
SIERRA_ITEMS = 2500
SIERRA_BATCH_SIZE = 1000  # the backend's full-sync batch: 2500 items arrive in 3 batches
ENDERTURING_DAY = date(2024, 6, 26)
ENDERTURING_LOGICAL_DATE = "2024-06-27T03:00:00+00:00"  # a manual run loads the last complete day
ENDERTURING_SESSIONS = 800
MOVIES_FILMS = 2000
JOBS_DAY = date(2025, 3, 2)
JOBS_LOGICAL_DATE = "2025-03-02T04:30:00+00:00"
JOBS_ORDERS = 3000
# Transient faults still retry, but without the production minutes-long waits.
DEMO_RETRY_POLICY = {"retry_delay_s": 1, "max_retry_delay_s": 5}


@dataclass
class Outcome:
    """One line of the summary: what a DAG read, loaded and rejected, in its own unit."""

    dag_id: str
    ok: bool
    unit: str
    read: int | None = None
    loaded: int | None = None
    rejected: int | None = None
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Workspace:
    root: Path
    airflow_env: dict[str, str]

    def path(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log_path(self, dag_id: str) -> Path:
        return self.path("logs") / f"{dag_id}.log"

    def run_dag(
        self, dag_id: str, env: dict[str, str], conf: dict | None = None, logical_date: str | None = None
    ) -> bool:
        """``airflow dags test`` in a subprocess (it exits non-zero when the run failed)."""
        airflow = Path(sys.executable).with_name("airflow")
        command = [str(airflow), "dags", "test", dag_id, *([logical_date] if logical_date else [])]
        command += ["-c", json.dumps(conf or {})]
        verbose = bool(os.environ.get("DEMO_VERBOSE"))  # the DAG's output on the terminal instead of the log
        print(
            f"==> airflow dags test {dag_id}" + ("" if verbose else f" (log: {self.log_path(dag_id)})"),
            flush=True,
        )
        with self.log_path(dag_id).open("wb") as log:
            result = subprocess.run(
                command,
                env={**os.environ, **self.airflow_env, **env},
                stdout=None if verbose else log,
                stderr=None if verbose else subprocess.STDOUT,
            )
        return result.returncode == 0

    def xcoms(self, dag_id: str) -> dict[str, Any]:
        """Return values of the unmapped tasks of the DAG's latest run, read from the demo's metadata DB."""
        database = self.airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
        with closing(sqlite3.connect(database)) as db:
            rows = db.execute(
                "SELECT task_id, value FROM xcom WHERE dag_id = ? AND key = 'return_value' AND map_index = -1"
                " AND run_id = (SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1)",
                (dag_id, dag_id),
            ).fetchall()
        return {task_id: json.loads(value) for task_id, value in rows if value is not None}

    def failed(self, dag_id: str, unit: str) -> Outcome:
        return Outcome(dag_id, False, unit, detail=f"DAG run failed, see {self.log_path(dag_id)}")


def count(dbname: str, query: str) -> int:
    with psycopg.connect(pgdb.dsn(dbname)) as conn:
        return conn.execute(query).fetchone()[0]


def visits_demo(ws: Workspace, dag_id: str) -> Outcome:
    remote = ws.path("visits", "remote")
    for n, column2 in ((101, "jk"), (102, "jyv"), (103, "fgh")):
        path = write_report(remote / f"report_{n}.txt", VISIT_REPORT_ROWS, seed=n, column2=column2)
        an_hour_ago = time.time() - 3600
        os.utime(path, (an_hour_ago, an_hour_ago))
    if SAMPLE_REPORTS.is_dir():
        for sample in sorted(SAMPLE_REPORTS.glob("report_*.txt")):
            shutil.copy2(sample, remote / sample.name)  # served from the workspace, never from the repo
    pgdb.recreate_database(DEMO_DB)
    archive = ws.root / "visits" / "bckp"
    sshd = start_sshd(ws.path("visits", "sshd"))
    try:
        env = dict(
            [
                connection_env("sftp_visits", sshd.connection()),
                connection_env("postgres_visits", pgdb.postgres_connection(DEMO_DB)),
                variable_env(
                    "sftp_visits_config",
                    {
                        "remote_dir": str(remote),
                        "backup_dir": str(archive),
                        "quarantine_dir": str(ws.root / "visits" / "quarantine"),
                        "staging_dir": str(ws.root / "visits" / "staging"),
                        "min_file_age_s": 0,
                    },
                ),
            ]
        )
        ok = ws.run_dag(dag_id, env, conf={"reference_date": "2024-05-31"})
    finally:
        sshd.stop()
    if not ok:
        return ws.failed(dag_id, "rows")
    with psycopg.connect(pgdb.dsn(DEMO_DB)) as conn:
        files, rows, loaded, rejected = conn.execute(
            "SELECT count(*), coalesce(sum(rows_read), 0), coalesce(sum(rows_loaded), 0),"
            " coalesce(sum(rows_rejected), 0) FROM load_log WHERE status IN ('COMPLETED', 'QUARANTINED')"
        ).fetchone()
        visitors = conn.execute("SELECT count(*) FROM visitor").fetchone()[0]
    archives = len(list(archive.glob("*.zip")))
    left = len(list(remote.iterdir()))
    return Outcome(
        dag_id,
        ok,
        "rows",
        rows,
        loaded,
        rejected,
        f"{files} files loaded, {archives} archived, {left} left at source; {visitors} visitors",
    )


def sierra_demo(ws: Workspace, dag_id: str) -> Outcome:
    pgdb.recreate_database(SIERRA_DB)
    sierra_data.fill_database(SIERRA_DB, SIERRA_ITEMS)
    api_key = secrets.token_hex(16)
    backend = SignumServer(BackendState(batch_size=SIERRA_BATCH_SIZE, keys={api_key: "etl"})).start()
    try:
        env = dict(
            [
                connection_env(
                    "sierra_dna",
                    {
                        **pgdb.postgres_connection(SIERRA_DB),
                        "login": sierra_data.READER_ROLE,
                        "extra": {"application_name": "airflow-sierra-sync"},
                    },
                ),
                connection_env("signum_backend", backend.connection(api_key)),
                # The generated catalogue has NULL itypes, which the backend rejects as a whole file.
                variable_env("sierra_sync_settings", {"itype_null_fallback": 0}),
            ]
        )
        ok = ws.run_dag(dag_id, env)
    finally:
        backend.stop()
    if not ok:
        return ws.failed(dag_id, "items")
    summary = ws.xcoms(dag_id)["sync_items"]
    items = count(SIERRA_DB, "SELECT count(*) FROM sierra_view.item_record")
    return Outcome(
        dag_id,
        ok,
        "items",
        items,
        len(backend.state.items),
        0,  # the /sync contract has no per-row reject: a bad file fails the run
        f"{summary['batches']} batches posted, backend now {backend.state.sync_mode}; "
        f"{summary['itype_fallbacks']} NULL itypes sent as 0",
    )


def enderturing_demo(ws: Workspace, dag_id: str) -> Outcome:
    pgdb.recreate_database(ENDERTURING_DB)
    fake = FakeEnderTuring(generate_dataset([ENDERTURING_DAY], ENDERTURING_SESSIONS, seed=7))
    server = start_server(fake)
    try:
        env = dict(
            [
                connection_env(
                    "enderturing_default",
                    {
                        "conn_type": "http",
                        "host": server.url,
                        "login": fake.username,
                        "password": fake.password,
                    },
                ),
                connection_env("enderturing_warehouse", pgdb.postgres_connection(ENDERTURING_DB)),
            ]
        )
        ok = ws.run_dag(dag_id, env, logical_date=ENDERTURING_LOGICAL_DATE)
    finally:
        server.stop()
    if not ok:
        return ws.failed(dag_id, "sessions")
    results = ws.xcoms(dag_id)
    extracted = results["sync_sessions"]
    tables = extracted["tables"]
    child_rows = sum(table["staged"] for name, table in tables.items() if name != "sessions")
    return Outcome(
        dag_id,
        ok,
        "sessions",
        extracted["sessions"],
        count(ENDERTURING_DB, "SELECT count(*) FROM enderturing.sessions"),
        extracted["detail_failures"],
        f"day {extracted['day']}: {child_rows} child rows (tags, scores, summaries, ...) "
        f"in {len(tables) - 1} tables; {extracted['detail_calls']} per-session API calls",
    )


def movies_demo(ws: Workspace, dag_id: str) -> Outcome:
    pgdb.recreate_database(MOVIES_DB)
    with psycopg.connect(pgdb.dsn(MOVIES_DB), autocommit=True) as conn:
        movies_data.create_schema(conn, "A")
        movies_data.create_indexes(conn, "A")
        movies_data.generate(conn, MOVIES_FILMS, convention="A")
    elasticsearch = EsSubsetServer(major=8).start()
    try:
        env = dict(
            [
                connection_env("movies_postgres", pgdb.postgres_connection(MOVIES_DB)),
                connection_env(
                    "movies_elasticsearch",
                    {"conn_type": "elasticsearch", "host": "127.0.0.1", "port": elasticsearch.port},
                ),
            ]
        )
        ok = ws.run_dag(dag_id, env)
        indexed = elasticsearch.cluster.count("movies", {})["count"] if ok else None
        physical = sorted(elasticsearch.cluster.aliases.get("movies", ()))
    finally:
        elasticsearch.stop()
    if not ok:
        return ws.failed(dag_id, "documents")
    synced = ws.xcoms(dag_id)["sync"]
    return Outcome(
        dag_id,
        ok,
        "documents",
        synced["rows_read"],
        indexed,
        synced["rows_rejected"],
        f"{synced['extra']['mode']} load; alias movies -> {', '.join(physical)}",
    )


def jobs_demo(ws: Workspace, dag_id: str) -> Outcome:
    pgdb.recreate_database(JOBS_DB)
    jobs_data.create_demo_tables(pgdb.dsn(JOBS_DB))
    data_root = ws.path("jobs", "data")
    jobs_data.write_orders_csv(data_root / "exports" / f"orders_{JOBS_DAY:%Y%m%d}.csv", JOBS_ORDERS)
    warehouse = pgdb.postgres_connection(JOBS_DB)
    settings = {
        "default_environment": "DEV",
        "metrics_conn_id": "jobs_metrics",
        "staging": {"root": str(ws.path("jobs", "staging")), "retention_days": 7},
        "environments": {
            "DEV": {
                "data_root": str(data_root),
                "connections": {"warehouse": "jobs_warehouse_dev", "visits": "postgres_visits"},
            }
        },
    }
    env = dict(
        [
            connection_env("jobs_warehouse_dev", warehouse),
            connection_env("jobs_metrics", warehouse),
            variable_env("declarative_jobs", settings),
        ]
    )
    if not ws.run_dag(dag_id, env, logical_date=JOBS_LOGICAL_DATE):
        return ws.failed(dag_id, "rows")
    with psycopg.connect(pgdb.dsn(JOBS_DB)) as conn:
        read, rejected, dropped = conn.execute(
            "SELECT rows_read, rows_rejected, rows_dropped FROM declarative_job_runs WHERE dag_id = %s",
            (dag_id,),
        ).fetchone()
        loaded = conn.execute("SELECT count(*) FROM sales.orders").fetchone()[0]
    rejects = data_root / "rejects" / f"orders_{JOBS_DAY:%Y%m%d}_rejected.csv"
    return Outcome(
        dag_id,
        True,
        "rows",
        read,
        loaded,
        rejected,
        f"{dropped} cancelled orders filtered out; rejects with reasons in {rejects.relative_to(ws.root)}",
    )


# name on the command line -> (DAG id, the function that serves its systems and runs it)
DEMOS: dict[str, tuple[str, Callable[[Workspace, str], Outcome]]] = {
    "visits": ("sftp_visits_to_postgres", visits_demo),
    "sierra": ("sierra_signum_item_sync", sierra_demo),
    "enderturing": ("enderturing_to_warehouse", enderturing_demo),
    "movies": ("movies_postgres_to_elasticsearch", movies_demo),
    "jobs": ("orders_daily_load", jobs_demo),
}


def run_demo(name: str, ws: Workspace) -> Outcome:
    dag_id, demo = DEMOS[name]
    started = time.monotonic()
    try:
        outcome = demo(ws, dag_id)
    except Exception as exc:  # a demo that cannot even start must not stop the others
        outcome = Outcome(dag_id, False, "-", detail=f"demo error: {type(exc).__name__}: {exc}")
    outcome.seconds = time.monotonic() - started
    return outcome


def _number(value: int | None) -> str:
    return "-" if value is None else str(value)


def print_summary(outcomes: list[Outcome]) -> None:
    print()
    print(
        f"{'pipeline':<33} {'result':<6} {'unit':<9} {'read':>6} {'loaded':>6} {'rejected':>8} {'time':>5}  detail"
    )
    for o in outcomes:
        print(
            f"{o.dag_id:<33} {'ok' if o.ok else 'FAILED':<6} {o.unit:<9} {_number(o.read):>6} "
            f"{_number(o.loaded):>6} {_number(o.rejected):>8} {o.seconds:>4.0f}s  {o.detail}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "pipelines", nargs="*", metavar="PIPELINE", help=f"any of {', '.join(DEMOS)} (default: all)"
    )
    names = parser.parse_args(argv).pipelines or list(DEMOS)
    if unknown := sorted(set(names) - set(DEMOS)):
        parser.error(f"unknown pipeline(s) {', '.join(unknown)}; choose from {', '.join(DEMOS)}")
    root = Path(tempfile.mkdtemp(prefix="etlkit-demo-"))
    env = airflow_environment(root / "airflow_home")
    env.update([variable_env("etl_retry_policy", DEMO_RETRY_POLICY)])
    env["ETLKIT_DEADLINE_ALERTS"] = "off"  # `airflow dags test` cannot finish a run with deadlines (3.3.2)
    print(f"demo workspace: {root}; PostgreSQL {pgdb.PG_HOST}:{pgdb.PG_PORT}", flush=True)
    migrate_metadata_db(env)
    ws = Workspace(root, env)
    outcomes = [run_demo(name, ws) for name in names]
    print_summary(outcomes)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
