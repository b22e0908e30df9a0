"""Every DAG file imports cleanly, follows the project's conventions and does no I/O at import."""

from __future__ import annotations

import builtins
import importlib.util
import io
import os
import socket
from pathlib import Path

# Airflow imports its cron timetables (and croniter) lazily, at the first DAG a process builds; croniter's
# import probes the platform with a subprocess that opens /dev/null for writing. That is Airflow's
# one-time start-up, not the DAG file's I/O, so it happens before the guard.
import airflow.sdk.definitions.timetables.interval  # noqa: F401
import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integrity
DAG_FILES = sorted(p for p in (REPO_ROOT / "dags").rglob("*.py") if not p.name.startswith("_"))


def test_every_dag_file_imports_without_errors(dag_bag):
    assert dag_bag.import_errors == {}
    assert dag_bag.dags, "no DAG found"
    assert {Path(dag.fileloc).name for dag in dag_bag.dags.values()} >= {"sftp_visits_to_postgres.py"}


def test_every_dag_follows_the_conventions(dag_bag):
    problems = []
    for dag_id, dag in dag_bag.dags.items():
        if not dag.tags:
            problems.append(f"{dag_id}: no tags")
        if not (dag.doc_md or "").strip():
            problems.append(f"{dag_id}: no doc_md")
        if not dag.max_active_runs:
            problems.append(f"{dag_id}: max_active_runs not set")
        if not (dag.default_args or {}).get("retries", 0) > 0:
            problems.append(f"{dag_id}: default_args retries must be > 0")
        if (dag.default_args or {}).get("retry_policy") is None:
            problems.append(f"{dag_id}: no retry_policy in default_args")
        for task in dag.tasks:
            if not task.owner or task.owner == "airflow":
                problems.append(f"{dag_id}.{task.task_id}: no owner")
            if task.on_failure_callback is None:
                problems.append(f"{dag_id}.{task.task_id}: no on_failure_callback")
    assert problems == []


def test_every_pipeline_retry_policy_grants_exactly_the_task_retries(dag_bag, monkeypatch):
    """Airflow stops at the task's retries whatever the policy says, and the policy stops at its own
    count: a mismatch makes the UI's "try n of m" (and the DAG's documented retries) untrue."""
    from airflow.sdk.definitions.retry_policy import RetryAction

    from etlkit.common.errors import TransientError
    from etlkit.common.retry_policy import PipelineRetryPolicy

    monkeypatch.delenv("AIRFLOW_VAR_ETL_RETRY_POLICY", raising=False)
    checked = 0
    for dag in dag_bag.dags.values():
        for task in dag.tasks:
            if not isinstance(task.retry_policy, PipelineRetryPolicy) or task.retries == 0:
                continue
            last, beyond = (
                task.retry_policy.evaluate(TransientError("503"), try_number, task.retries).action
                for try_number in (task.retries, task.retries + 1)
            )
            assert (last, beyond) == (RetryAction.RETRY, RetryAction.FAIL), (dag.dag_id, task.task_id)
            checked += 1
    assert checked > 10


def guard_import_io(monkeypatch, name: str) -> None:
    """Make sockets, database connections, Variable and Connection reads and file writes fail."""
    import psycopg
    from airflow.sdk import BaseHook, Variable

    def refuse(*args, **kwargs):
        raise AssertionError(f"{name} does I/O at import: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(psycopg, "connect", refuse)  # libpq opens its sockets in C
    monkeypatch.setattr(psycopg.Connection, "connect", classmethod(refuse))
    monkeypatch.setattr(Variable, "get", staticmethod(refuse))
    monkeypatch.setattr(BaseHook, "get_connection", classmethod(refuse))
    real_open, real_os_open = io.open, os.open
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            raise AssertionError(f"{name} writes {file} at import")
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(file, flags, *args, **kwargs):
        if flags & write_flags:
            raise AssertionError(f"{name} writes {file} at import")
        return real_os_open(file, flags, *args, **kwargs)

    # pathlib and io call io.open; builtins.open is the same function object.
    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
    for creator in ("mkdir", "makedirs"):
        monkeypatch.setattr(os, creator, refuse)


def import_file(path: Path, module_name: str) -> None:
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_does_no_io_at_import(path, monkeypatch):
    """Importing a DAG file must not do I/O (it runs at every parse)."""
    guard_import_io(monkeypatch, path.name)
    import_file(path, f"integrity_{path.stem}")


@pytest.mark.parametrize(
    "statement",
    [
        "open(TARGET, 'w')",
        "Path(TARGET).write_text('x')",
        "Path(TARGET).parent.joinpath('made').mkdir()",
        "os.makedirs(TARGET + '.d')",
        "socket.create_connection(('127.0.0.1', 9))",
        "psycopg.connect('host=127.0.0.1 dbname=postgres')",
        "Variable.get('anything')",
        "BaseHook.get_connection('anything')",
    ],
)
def test_the_import_guard_catches_each_kind_of_io(statement, tmp_path, monkeypatch):
    dag_file = tmp_path / "io_at_import.py"
    dag_file.write_text(
        "import os, socket\nfrom pathlib import Path\nimport psycopg\n"
        "from airflow.sdk import BaseHook, Variable\n"
        f"TARGET = {str(tmp_path / 'written')!r}\n{statement}\n"
    )
    guard_import_io(monkeypatch, dag_file.name)
    with pytest.raises(AssertionError, match="io_at_import.py (does I/O|writes)"):
        import_file(dag_file, "integrity_io_at_import")
