"""Test harness shared by every pipeline: an isolated Airflow, real PostgreSQL, real sshd.

The Airflow environment is set at import time, before anything imports ``airflow``.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dev import pgdb
from dev.airflow_env import (
    airflow_environment,
    connection_env,
    migrate_metadata_db,
    variable_env,
)
from dev.sshd import SshServer, start_sshd

REPO_ROOT = Path(__file__).resolve().parents[1]

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="etlkit-tests-"))
_AIRFLOW_ENV = airflow_environment(_SESSION_TMP / "airflow_home")
os.environ.update(_AIRFLOW_ENV)
# A retry in dag.test() waits for its delay: tests run with no delay unless they ask.
os.environ.update(dict([variable_env("etl_retry_policy", {"retry_delay_s": 0})]))
# dag.test() of Airflow 3.3.2 cannot finish a successful run of a DAG with a deadline (etlkit.common.notify).
os.environ["ETLKIT_DEADLINE_ALERTS"] = "off"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def session_tmp() -> Path:
    return _SESSION_TMP


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """``airflow db migrate`` once per session into the isolated SQLite metadata DB."""
    migrate_metadata_db(_AIRFLOW_ENV)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL for the whole session, dropped afterwards."""
    with pgdb.temporary_database() as name:
        yield name


@pytest.fixture(scope="session")
def pg_dsn(pg_database: str) -> str:
    return pgdb.dsn(pg_database)


@pytest.fixture
def pg_conn(pg_dsn: str):
    import psycopg

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def sshd(session_tmp: Path) -> Iterator[SshServer]:
    server = start_sshd(session_tmp / "sshd")
    yield server
    server.stop()


@pytest.fixture
def airflow_conn(monkeypatch) -> Callable[[str, dict], None]:
    """Define an Airflow connection for one test, the way deployments do: ``AIRFLOW_CONN_*``."""

    def define(conn_id: str, connection: dict) -> None:
        monkeypatch.setenv(*connection_env(conn_id, connection))

    return define


@pytest.fixture
def airflow_var(monkeypatch) -> Callable[[str, object], None]:
    def define(key: str, value: object) -> None:
        monkeypatch.setenv(*variable_env(key, value))

    return define


@pytest.fixture(scope="session")
def dag_bag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag


@pytest.fixture
def run_dag(dag_bag):
    """Run a DAG once with ``dag.test()``; returns the finished DagRun (state asserted by callers)."""

    def run(dag_id: str, conf: dict | None = None, logical_date=None):
        assert dag_bag.get_dag(dag_id) is not None, f"DAG {dag_id!r} not found"
        # dag.test() leaves the run's conf in the DAG's params: each run gets its own copy. Operators
        # copy their params shallowly when deep-copied (BaseOperator.__deepcopy__), so those too.
        dag = copy.deepcopy(dag_bag.get_dag(dag_id))
        for task in dag.tasks:
            task.params = copy.deepcopy(task.params)
        kwargs = {"run_conf": conf or {}}
        if logical_date is not None:
            kwargs["logical_date"] = logical_date
        return dag.test(**kwargs)

    return run


def task_states(dag_run) -> dict[str, str]:
    """``{task_id[map_index]: state}`` of a finished run."""
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = dag_run.get_task_instances(session=session)
        return {
            (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state) for ti in tis
        }
