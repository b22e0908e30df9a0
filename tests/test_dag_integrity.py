"""Every DAG file imports cleanly, follows the project's conventions and does no I/O at import."""

from __future__ import annotations

import builtins
import importlib.util
import socket
from pathlib import Path

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


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_does_no_io_at_import(path, monkeypatch):
    """Importing a DAG file must not open sockets or read Variables (it runs at every parse)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"{path.name} does network I/O at import: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    from airflow.sdk import Variable

    monkeypatch.setattr(Variable, "get", staticmethod(refuse))
    real_open = builtins.open

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            raise AssertionError(f"{path.name} writes {file} at import")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    spec = importlib.util.spec_from_file_location(f"integrity_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
