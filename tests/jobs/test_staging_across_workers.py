"""Staging across workers: components of one run on two hosts see each other's outputs only through a
shared staging root; without one, the downstream fails at once saying so and what to do."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from etlkit.common.errors import BadInputError
from etlkit.jobs.environment import rooted_path
from etlkit.jobs.metrics import ComponentMetrics
from etlkit.jobs.runtime import RuntimeIO, run_component
from etlkit.jobs.settings import JobsSettings
from etlkit.jobs.staging import run_directory
from etlkit.jobs.validation import validate_job_text

pytestmark = pytest.mark.jobs

RUN_ID = "scheduled__2025-03-02T04:30:00+00:00"
JOB = {
    "format_version": 1,
    "name": "two_hosts",
    "components": [
        {
            "id": "read",
            "type": "read_csv",
            "config": {"path": "in.csv", "columns": [{"name": "id"}]},
            "routes": {"out": ["write"]},
        },
        {"id": "write", "type": "write_csv", "config": {"path": "out.csv"}},
    ],
}


def host_io(staging_root: Path, data_root: Path, prepared_on: str) -> RuntimeIO:
    """What a component task on one host gets: the run's staging directory under *its* view of the root."""
    run_dir = run_directory(staging_root, JOB["name"], RUN_ID)
    run_dir.mkdir(parents=True, exist_ok=True)  # _prepare made it (on this disk, or on the shared one)
    return RuntimeIO(
        run_dir=run_dir,
        resolve_path=lambda path, conn: rooted_path(path, data_root),
        sql_connection=None,
        staging_root=str(staging_root),
        prepared_on=prepared_on,
    )


def run_on(io: RuntimeIO, validated, component_id: str) -> None:
    run_component(validated, component_id, io, ComponentMetrics(component_id, "x"))


@pytest.fixture
def job(tmp_path):
    data_root = tmp_path / "data"
    data_root.mkdir()
    (data_root / "in.csv").write_text("id\n1\n2\n")
    return validate_job_text(json.dumps(JOB), tmp_path / "two_hosts.json"), data_root


def test_downstream_on_a_host_that_does_not_share_the_staging_root_fails_at_once_naming_the_cause(
    tmp_path, job
):
    from etlkit.jobs.dag import _default_args

    validated, data_root = job
    host_a_root, host_b_root = tmp_path / "host_a" / "staging", tmp_path / "host_b" / "staging"
    run_on(host_io(host_a_root, data_root, "worker-a"), validated, "read")

    with pytest.raises(BadInputError) as raised:
        run_on(host_io(host_b_root, data_root, "worker-a"), validated, "write")

    message = str(raised.value)
    assert f"the staging root {host_b_root} is not shared between workers" in message
    assert (
        f"this task runs on {socket.gethostname()}" in message
        and "created by _prepare on worker-a" in message
    )
    assert "set staging.root of Variable 'declarative_jobs' to a volume every worker mounts" in message
    assert "its try was cleared" in message and "clear the run from the sources" in message
    assert not (data_root / "out.csv").exists()
    # Permanent: the job's retry policy fails it at once (a retry could only succeed by chance on worker-a).
    from airflow.sdk.definitions.retry_policy import RetryAction

    policy = _default_args(validated)["retry_policy"]
    assert policy.evaluate(raised.value, try_number=1, max_tries=3).action == RetryAction.FAIL


def test_downstream_on_another_host_reads_the_upstream_output_through_a_shared_root(tmp_path, job):
    validated, data_root = job
    shared_root = tmp_path / "shared" / "staging"
    run_on(host_io(shared_root, data_root, "worker-a"), validated, "read")

    run_on(host_io(shared_root, data_root, "worker-a"), validated, "write")

    assert (data_root / "out.csv").read_text().splitlines() == ["id", "1", "2"]


@pytest.mark.parametrize(
    ("executor", "settings", "refused"),
    [
        ("CeleryExecutor", None, True),
        ("CeleryExecutor", {"staging": {"retention_days": 7}}, True),
        (
            "airflow.providers.celery.executors.celery_executor.CeleryExecutor",
            {"staging": {"root": "/x"}},
            False,
        ),
        ("CeleryExecutor", {"staging": {"root": "/shared/declarative/staging"}}, False),
        ("LocalExecutor", None, False),
    ],
)
def test_a_multi_host_executor_needs_an_explicit_staging_root(executor, settings, refused):
    from etlkit.common.errors import ConfigurationError
    from etlkit.jobs.environment import check_staging_declared

    settings = JobsSettings.resolve(variable=settings, read_variable=False, environ={})

    if refused:
        with pytest.raises(ConfigurationError, match="set it to a directory on a volume every worker mounts"):
            check_staging_declared(settings, executor)
    else:
        check_staging_declared(settings, executor)


@pytest.mark.parametrize("executor", ["CeleryExecutor", "LocalExecutor"])
@pytest.mark.parametrize("root", ["s3://bucket/staging", "file:///shared/staging"])
def test_an_object_storage_root_is_accepted_on_every_executor(executor, root):
    """Object storage is shared by every worker by nature (tests/jobs/test_s3_staging.py runs a job on it)."""
    from etlkit.jobs.environment import check_staging_declared

    settings = JobsSettings.resolve(variable={"staging": {"root": root}}, read_variable=False, environ={})
    check_staging_declared(settings, executor)
