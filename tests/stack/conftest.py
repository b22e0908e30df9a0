"""The CeleryExecutor stack of ``dev.stack`` (two workers, Redis, the demo systems), started once per
session, and helpers that drive it only through REST API v2 with a JWT, as the UI does.

Task-by-worker tables go to ``test-output/stack/`` (or ``$STACK_TEST_OUTPUT``); on a failure the
components' logs are under the printed stack root.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from dev import pgdb
from dev.sshd import free_port
from dev.stack import DemoSystems, Layout, Stack
from tests.conftest import REPO_ROOT

RUN_TIMEOUT_S = 600
FINISHED = {"success", "failed"}
# The DAGs the stack tests drive: the fixture yields once the dag-processor has serialized them.
PIPELINE_DAGS = (
    "sftp_visits_to_postgres",
    "sierra_signum_item_sync",
    "enderturing_to_warehouse",
    "movies_postgres_to_elasticsearch",
    "orders_daily_load",
)


def pytest_configure(config):
    config.addinivalue_line("markers", "stack: the CeleryExecutor stack driven through REST (tests/stack)")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/stack/" in str(item.fspath):
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def stack_output() -> Path:
    path = Path(os.environ.get("STACK_TEST_OUTPUT", REPO_ROOT / "test-output" / "stack"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class RunningStack:
    stack: Stack
    systems: DemoSystems

    @property
    def layout(self) -> Layout:
        return self.stack.layout

    def api(self) -> httpx.Client:
        return self.stack.client()

    def unpause(self, dag_id: str) -> None:
        with self.api() as api:
            api.patch(f"/dags/{dag_id}", json={"is_paused": False}).raise_for_status()

    def trigger(self, dag_id: str, conf: dict | None = None, logical_date: str | None = None) -> str:
        with self.api() as api:
            response = api.post(
                f"/dags/{dag_id}/dagRuns", json={"logical_date": logical_date, "conf": conf or {}}
            )
            assert response.status_code == 200, response.text
            return response.json()["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict:
        with self.api() as api:
            response = api.get(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")
            response.raise_for_status()
            return response.json()

    def wait(self, dag_id: str, run_id: str, timeout_s: float = RUN_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.run(dag_id, run_id)
            if run["state"] in FINISHED:
                return run
            time.sleep(3)
        raise AssertionError(
            f"{dag_id} {run_id} not finished after {timeout_s} s: {self.run(dag_id, run_id)}"
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        with self.api() as api:
            response = api.get(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances")
            response.raise_for_status()
            tis = response.json()["task_instances"]
        return sorted(tis, key=lambda ti: (ti["start_date"] or "9999", ti["task_id"], ti["map_index"]))

    def wait_for_dags(self, dag_ids=PIPELINE_DAGS, timeout_s: float = 300) -> None:
        """A fresh stack answers 404 for a DAG the dag-processor has not serialized yet."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self.api() as api:
                response = api.get("/dags", params={"limit": 100})
                response.raise_for_status()
                missing = set(dag_ids) - {dag["dag_id"] for dag in response.json()["dags"]}
            if not missing:
                return
            assert time.monotonic() < deadline, f"not parsed after {timeout_s} s: {sorted(missing)}"
            time.sleep(2)

    def runs(self, dag_id: str) -> list[dict]:
        with self.api() as api:
            response = api.get(f"/dags/{dag_id}/dagRuns", params={"order_by": "id"})
            response.raise_for_status()
            return response.json()["dag_runs"]


def far_daily_cron(now: datetime) -> str:
    """A daily cron twelve hours from ``now``: never due while a test session runs. With the DAG's
    own 00:02 UTC a session crossing it got a scheduled visits run whose R (that day) recounted
    every visitor's period counters under the tests' feet."""
    tick = now + timedelta(hours=12)
    return f"{tick.minute} {tick.hour} * * *"


# The visits schedule of the test stack (the schedule test sets its own for a while, then this again).
VISITS_SCHEDULE = far_daily_cron(datetime.now(UTC))


@pytest.fixture(scope="session")
def stack(stack_output: Path) -> Iterator[RunningStack]:
    root = Path(tempfile.mkdtemp(prefix="etlkit-stack-test-"))
    layout = Layout(root, prefix=f"etlkit_stacktest_{uuid.uuid4().hex[:8]}")
    print(f"\nstack root (component logs in {layout.logs}): {root}")
    systems = DemoSystems(layout).start()
    stack = Stack(
        layout, free_port(), systems.environment(), extra_env={"SFTP_VISITS_SCHEDULE": VISITS_SCHEDULE}
    )
    try:
        stack.start()
        running = RunningStack(stack, systems)
        running.wait_for_dags()
        yield running
    finally:
        stack.stop()
        systems.stop()
        for purpose in ("airflow", "visits", "sierra", "enderturing", "movies", "jobs"):
            pgdb.drop_database(layout.database(purpose))
        if layout.logs.is_dir():
            shutil.copytree(layout.logs, stack_output / "logs", dirs_exist_ok=True)
        if not os.environ.get("STACK_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


def task_log(stack, dag_id: str, run_id: str, task_id: str, try_number: int) -> list[str]:
    with stack.api() as api:
        response = api.get(
            f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": True},
            headers={"Accept": "application/json"},
        )
        response.raise_for_status()
        return [str(event.get("event", "")) for event in response.json()["content"]]
