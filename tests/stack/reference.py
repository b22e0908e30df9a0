"""One-worker reference runs: what one ``dag.test()`` run gives on the stack's input.

Each pipeline DAG runs with ``dag.test()`` in the test process (one process, one disk) against the
stack's own demo systems for its sources and a second set of targets (``<prefix>_<pipeline>_ref``
databases, a second Signum backend, a second Elasticsearch), with the same params. The ``*_state``
functions read a target the same way for the stack and the reference, leaving out what differs
between any two correct runs (load timestamps, surrogate ids) and what other stack tests add.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from dev import jobs_data, pgdb
from dev.airflow_env import connection_env, variable_env
from dev.es_server import EsSubsetServer
from dev.signum_server import BackendState, SignumServer
from dev.stack import JOBS_DAY, SIERRA_BATCH_SIZE, VISIT_REPORT_ROWS, VISIT_REPORTS
from dev.visits_data import write_report
from tests.conftest import task_states

VISITS_REFERENCE_DATE = "2024-05-31"


def enderturing_logical_date(day: date) -> datetime:
    """A manual run at 03:00 the next day loads ``day`` (the DAG's daily interval before it)."""
    return datetime.combine(day + timedelta(days=1), time(3), tzinfo=UTC)


JOBS_LOGICAL_DATE = datetime.combine(JOBS_DAY, time(4, 30), tzinfo=UTC)


@dataclass
class Reference:
    """Runs DAGs with ``dag.test()`` on the stack's sources, into targets of its own."""

    stack: Any  # tests.stack.conftest.RunningStack
    run_dag: Callable
    monkeypatch: Any

    @property
    def root(self) -> Path:
        return self.stack.layout.root / "reference"

    def database(self, purpose: str) -> str:
        return self.stack.layout.database(f"{purpose}_ref")

    def use(self, *settings: tuple[str, str]) -> None:
        """The stack's connections and Variables as env, with ``settings`` replacing some."""
        for key, value in self.stack.systems.environment().items():
            if key.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_")) and key != "AIRFLOW_VAR_ETL_RETRY_POLICY":
                self.monkeypatch.setenv(key, value)
        for key, value in settings:
            self.monkeypatch.setenv(key, value)

    def run(self, dag_id: str, conf: dict, logical_date: datetime | None = None) -> None:
        dag_run = self.run_dag(dag_id, conf=conf, logical_date=logical_date)
        assert dag_run.state == "success", f"reference run of {dag_id}: {task_states(dag_run)}"

    def drop_databases(self) -> None:
        for purpose in ("visits", "enderturing", "jobs"):
            pgdb.drop_database(self.database(purpose))

    # ---- one reference run per pipeline, returning the target's state ---------------------------

    def visits(self) -> dict:
        database = self.database("visits")
        pgdb.recreate_database(database)
        remote = self.root / "visits" / "remote"
        for n, column2 in VISIT_REPORTS.items():  # what DemoSystems.write_visit_reports wrote
            write_report(remote / f"report_{n}.txt", VISIT_REPORT_ROWS, seed=n, column2=column2)
        config = {
            "remote_dir": str(remote),
            "backup_dir": str(self.root / "visits" / "bckp"),
            "quarantine_dir": str(self.root / "visits" / "quarantine"),
            "staging_dir": str(self.root / "visits" / "staging"),
            "min_file_age_s": 0,
        }
        self.use(
            connection_env("postgres_visits", pgdb.postgres_connection(database)),
            variable_env("sftp_visits_config", config),
        )
        self.run("sftp_visits_to_postgres", {"reference_date": VISITS_REFERENCE_DATE})
        return visits_state(database, [f"report_{n}.txt" for n in VISIT_REPORTS])

    def sierra(self, conf: dict) -> dict[int, dict]:
        key = secrets.token_hex(16)
        backend = SignumServer(BackendState(batch_size=SIERRA_BATCH_SIZE, keys={key: "etl"})).start()
        try:
            self.use(connection_env("signum_backend", backend.connection(key)))
            self.run("sierra_signum_item_sync", conf)
            return sierra_state(backend)
        finally:
            backend.stop()

    def enderturing(self, day: date, conf: dict) -> dict:
        database = self.database("enderturing")
        pgdb.recreate_database(database)
        self.use(connection_env("enderturing_warehouse", pgdb.postgres_connection(database)))
        self.run("enderturing_to_warehouse", conf, enderturing_logical_date(day))
        return enderturing_state(database, day)

    def movies(self, conf: dict) -> dict[str, dict]:
        elasticsearch = EsSubsetServer(major=8).start()
        try:
            self.use(
                connection_env(
                    "movies_elasticsearch",
                    {"conn_type": "elasticsearch", "host": "127.0.0.1", "port": elasticsearch.port},
                )
            )
            self.run("movies_postgres_to_elasticsearch", conf)
            return movies_state(elasticsearch)
        finally:
            elasticsearch.stop()

    def orders(self) -> dict:
        database = self.database("jobs")
        pgdb.recreate_database(database)
        jobs_data.create_demo_tables(pgdb.dsn(database))
        data_root = self.root / "jobs" / "data"
        jobs_data.write_orders_export(data_root, JOBS_DAY)
        settings = {
            "default_environment": "STACK",
            "metrics_conn_id": "etl_metrics_pg",
            "staging": {"root": str(self.root / "jobs" / "staging")},
            "environments": {
                "STACK": {"data_root": str(data_root), "connections": {"warehouse": "warehouse"}}
            },
        }
        self.use(
            connection_env("warehouse", pgdb.postgres_connection(database)),
            connection_env("etl_metrics_pg", pgdb.postgres_connection(database)),
            variable_env("declarative_jobs", settings),
        )
        self.run("orders_daily_load", {}, JOBS_LOGICAL_DATE)
        return orders_state(database, data_root, JOBS_DAY)


# ---- target states, read alike for the stack and the reference -----------------------------------


def _rows(dbname: str, query: sql.Composable | str, params: Iterable = ()) -> list[tuple]:
    with psycopg.connect(pgdb.dsn(dbname)) as conn:
        return conn.execute(query, tuple(params)).fetchall()


def visits_state(dbname: str, file_names: list[str]) -> dict:
    """The loads of ``file_names`` and what they put in the tables; visitors whose e-mails appear in
    no other file (another stack test may load files that share e-mails), without the counters of
    R's year and month (a scheduled run on the stack refreshes them to its own R)."""
    files = (list(file_names),)
    return {
        "load_log": _rows(
            dbname,
            "SELECT file_name, status, rows_read, rows_loaded, rows_rejected, visits_loaded, encoding,"
            " column2_header FROM load_log WHERE file_name = ANY(%s) AND status <> 'FAILED' ORDER BY 1",
            files,
        ),
        "statistics": _rows(
            dbname,
            "SELECT source_file, line_number, email, jyv, badmail, baja, fecha_envio, fecha_open, opens,"
            " opens_virales, fecha_click, clicks, clicks_virales, links, ips, navegadores, plataformas"
            " FROM statistics WHERE source_file = ANY(%s) ORDER BY 1, 2",
            files,
        ),
        "errors": _rows(
            dbname,
            "SELECT source_file, line_number, raw_line, rule, message FROM errors"
            " WHERE source_file = ANY(%s) ORDER BY 1, 2",
            files,
        ),
        "visitor": _rows(
            dbname,
            "SELECT email, fechaprimeravisita, fechaultimavisita, visitastotales FROM visitor"
            " WHERE email IN (SELECT email FROM statistics WHERE source_file = ANY(%s))"
            " AND email NOT IN (SELECT email FROM statistics WHERE NOT source_file = ANY(%s)) ORDER BY 1",
            files * 2,
        ),
    }


def sierra_state(backend: SignumServer) -> dict[int, dict]:
    """The items the backend holds, without its own bookkeeping (when and how it took them)."""
    bookkeeping = {"updated_at", "in_update_queue"}
    with backend.state.lock:
        return {
            item_id: {k: v for k, v in item.items() if k not in bookkeeping}
            for item_id, item in backend.state.items.items()
        }


def enderturing_state(dbname: str, day: date) -> dict[str, list[str]]:
    """Every table: the rows of ``day``'s sessions (sessions and their children) and the
    dictionaries, as JSON without the ``etl_*`` bookkeeping columns."""
    state = {}
    with psycopg.connect(pgdb.dsn(dbname)) as conn:
        tables = conn.execute(
            "SELECT table_name, array_agg(column_name::text) FROM information_schema.columns"
            " WHERE table_schema = 'enderturing' AND table_name <> 'etl_schema_version' GROUP BY 1"
        ).fetchall()
        day_sessions = "SELECT id FROM enderturing.sessions WHERE start_dt::date = %(day)s"
        for table, columns in tables:
            where = sql.SQL("TRUE")
            if table == "sessions":
                where = sql.SQL("start_dt::date = %(day)s")
            elif "session_id" in columns:
                where = sql.SQL("session_id IN ({})").format(sql.SQL(day_sessions))
            rows = conn.execute(
                sql.SQL("SELECT to_jsonb(t) FROM enderturing.{} t WHERE {}").format(
                    sql.Identifier(table), where
                ),
                {"day": day},
            ).fetchall()
            state[table] = sorted(
                json.dumps({k: v for k, v in row[0].items() if not k.startswith("etl_")}, sort_keys=True)
                for row in rows
            )
    return state


def movies_state(elasticsearch: EsSubsetServer) -> dict[str, dict]:
    """The documents behind the ``movies`` alias, by id."""
    cluster = elasticsearch.cluster
    documents = {}
    for index in sorted(cluster.aliases.get("movies", ())):
        for doc_id, (_version, source) in cluster.indices[index].docs.items():
            documents[doc_id] = json.loads(source)
    return documents


def orders_state(dbname: str, data_root: Path, day: date) -> dict:
    rejects = data_root / "rejects" / f"orders_{day:%Y%m%d}_rejected.csv"
    return {
        "orders": _rows(dbname, "SELECT * FROM sales.orders ORDER BY order_id"),
        "rejects": rejects.read_text() if rejects.exists() else None,
    }


@pytest.fixture
def reference(stack, run_dag, monkeypatch) -> Iterator[Reference]:
    """Import into a test module to use: ``from tests.stack.reference import reference``."""
    runner = Reference(stack, run_dag, monkeypatch)
    yield runner
    runner.drop_databases()
