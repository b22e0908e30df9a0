"""Staging on object storage: a job DAG with ``staging.root = s3://bucket/prefix`` and an AWS connection,
against moto's S3 server on a loopback port (the real S3 REST API through s3fs and the Amazon provider)."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import pytest

from dev import jobs_data
from etlkit.common.errors import BadInputError
from etlkit.jobs.environment import rooted_path
from etlkit.jobs.metrics import ComponentMetrics
from etlkit.jobs.runtime import RuntimeIO, run_component
from etlkit.jobs.staging import remove_stale_staged_runs, run_directory, safe_run_id, staging_path
from etlkit.jobs.validation import validate_job_text
from tests.conftest import task_states
from tests.jobs.conftest import DAY, S3_CONN_ID, query, s3_connection
from tests.jobs.test_staging_across_workers import JOB as TWO_COMPONENTS
from tests.jobs.test_staging_across_workers import RUN_ID

pytestmark = pytest.mark.jobs

LOGICAL_DATE = datetime(DAY.year, DAY.month, DAY.day, 4, 30, tzinfo=UTC)
ORDERS_SQL = (
    "SELECT order_id, customer_id, status, quantity, unit_price, order_date FROM sales.orders ORDER BY 1"
)
ORDERS_OUTPUTS = {
    "read_orders/out",
    "drop_cancelled/pass",
    "convert/out",
    "validate/valid",
    "validate/unparseable",
    "validate/bad_quantity",
}


# The example export loaded into an empty table (tests/jobs/test_examples_e2e.py has the full story).
ORDERS_AFTER_ONE_RUN = [
    (1001, "C01", "shipped", 2, Decimal("19.90"), date(2025, 3, 1)),
    (1003, "C03", "new", 3, Decimal("7.50"), date(2025, 3, 2)),
    (1006, "C05", "new", 5, Decimal("3.20"), date(2025, 3, 3)),
]


def execute(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(statement)


def keys(client, bucket: str, prefix: str) -> list[str]:
    """Current objects under ``prefix``."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def ever_written(client, bucket: str, prefix: str) -> set[str]:
    """Every key ever written under ``prefix``, deleted ones included (the bucket is versioned)."""
    pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
    return {item["Key"] for page in pages for item in page.get("Versions", [])}


def run_prefix(dag_run) -> str:
    return f"declarative/{dag_run.dag_id}/{safe_run_id(dag_run.run_id)}/"


def orders_with_file_staging(jobs_env, run_dag, airflow_var) -> list[tuple]:
    """The orders table after the example run staged under a ``file://`` root: the reference."""
    root = jobs_env["staging_root"]
    staging = {"root": root.as_uri(), "retention_days": 7}
    airflow_var("declarative_jobs", {**jobs_env["settings"], "staging": staging})
    dag_run = run_dag("orders_daily_load", logical_date=LOGICAL_DATE)
    assert dag_run.state == "success", task_states(dag_run)
    run_dir = root / "orders_daily_load" / safe_run_id(dag_run.run_id)
    assert (root / "orders_daily_load").is_dir() and not run_dir.exists(), "staged there, then removed"
    rows = query(jobs_env["dsn"], ORDERS_SQL)
    execute(jobs_env["dsn"], "TRUNCATE sales.orders")
    return rows


def test_orders_job_stages_parts_and_manifests_in_the_bucket_and_removes_them_after_success(
    jobs_env, run_dag, s3_staging, airflow_var
):
    jobs_data.write_orders_export(jobs_env["data_root"], DAY)
    expected = orders_with_file_staging(jobs_env, run_dag, airflow_var)
    airflow_var("declarative_jobs", s3_staging["settings"])
    client, bucket = s3_staging["client"], s3_staging["bucket"]

    dag_run = run_dag("orders_daily_load", logical_date=LOGICAL_DATE)

    assert dag_run.state == "success", task_states(dag_run)
    assert query(jobs_env["dsn"], ORDERS_SQL) == expected == ORDERS_AFTER_ONE_RUN
    prefix = run_prefix(dag_run)
    written = ever_written(client, bucket, prefix)
    for output in ORDERS_OUTPUTS:
        assert f"{prefix}{output}/part-00000.parquet" in written, output
        assert f"{prefix}{output}/_manifest.json" in written, output
    assert f"{prefix}_run.json" in written, "_prepare's probe write went through the connection"
    assert keys(client, bucket, prefix) == [], "the run's staging is removed after a successful run"
    assert not any(jobs_env["staging_root"].rglob("*.parquet")), "nothing staged on the local root"


def test_a_failed_run_keeps_its_staging_and_a_rerun_gives_the_same_final_state(jobs_env, run_dag, s3_staging):
    jobs_data.write_orders_export(jobs_env["data_root"], DAY)
    client, bucket, dsn = s3_staging["client"], s3_staging["bucket"], jobs_env["dsn"]
    execute(dsn, "ALTER TABLE sales.orders RENAME TO orders_elsewhere")
    try:
        failed = run_dag("orders_daily_load", logical_date=LOGICAL_DATE)
    finally:
        execute(dsn, "ALTER TABLE sales.orders_elsewhere RENAME TO orders")

    assert failed.state == "failed", task_states(failed)
    assert task_states(failed)["load_orders"] == "failed"
    kept = keys(client, bucket, run_prefix(failed))
    assert f"{run_prefix(failed)}validate/valid/_manifest.json" in kept, kept
    assert f"{run_prefix(failed)}validate/valid/part-00000.parquet" in kept, kept

    rerun = run_dag("orders_daily_load", logical_date=LOGICAL_DATE)

    assert rerun.state == "success", task_states(rerun)
    assert query(dsn, ORDERS_SQL) == ORDERS_AFTER_ONE_RUN
    assert keys(client, bucket, run_prefix(rerun)) == []


TWO_STEPS = {**TWO_COMPONENTS, "name": "two_steps"}


@pytest.fixture
def two_steps(tmp_path, s3_staging):
    """A two-component job whose components run here, one after the other, staging in the bucket."""
    data_root = tmp_path / "in"
    data_root.mkdir()
    (data_root / "in.csv").write_text("id\n1\n2\n")
    validated = validate_job_text(json.dumps(TWO_STEPS), tmp_path / "two_steps.json")
    run_dir = run_directory(s3_staging["s3_root"], "two_steps", RUN_ID, S3_CONN_ID)
    io = RuntimeIO(
        run_dir=run_dir,
        resolve_path=lambda path, conn: rooted_path(path, data_root),
        sql_connection=None,
        staging_root=s3_staging["s3_root"],
    )
    prefix = f"declarative/two_steps/{safe_run_id(RUN_ID)}/"
    return validated, io, data_root, prefix


def run_on(io: RuntimeIO, validated, component_id: str) -> ComponentMetrics:
    return run_component(validated, component_id, io, ComponentMetrics(component_id, "x"))


def test_a_try_first_removes_its_own_partial_output_from_an_earlier_try(two_steps, s3_staging):
    validated, io, data_root, prefix = two_steps
    client, bucket = s3_staging["client"], s3_staging["bucket"]
    client.put_object(Bucket=bucket, Key=f"{prefix}read/out/part-00007.parquet", Body=b"an earlier try")

    run_on(io, validated, "read")
    run_on(io, validated, "write")

    assert keys(client, bucket, f"{prefix}read/") == [
        f"{prefix}read/out/_manifest.json",
        f"{prefix}read/out/part-00000.parquet",
    ]
    assert (data_root / "out.csv").read_text().splitlines() == ["id", "1", "2"]


def test_a_tampered_schema_fingerprint_fails_the_downstream_naming_component_and_port(two_steps, s3_staging):
    validated, io, data_root, prefix = two_steps
    client, bucket = s3_staging["client"], s3_staging["bucket"]
    run_on(io, validated, "read")
    manifest_key = f"{prefix}read/out/_manifest.json"
    manifest = json.loads(client.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    client.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps({**manifest, "fingerprint": "0" * 16}))

    with pytest.raises(BadInputError) as raised:
        run_on(io, validated, "write")

    message = str(raised.value)
    assert "staged output of component 'read' port 'out'" in message, message
    assert f"fingerprint {'0' * 16!r}, expected {manifest['fingerprint']!r}" in message
    assert not (data_root / "out.csv").exists()
    # Permanent: the job's retry policy fails it at once.
    from airflow.sdk.definitions.retry_policy import RetryAction

    from etlkit.jobs.dag import _default_args

    policy = _default_args(validated)["retry_policy"]
    assert policy.evaluate(raised.value, try_number=1, max_tries=3).action == RetryAction.FAIL


def test_housekeeping_removes_staged_runs_older_than_the_retention_through_the_connection(
    two_steps, s3_staging
):
    validated, io, data_root, prefix = two_steps
    client, bucket = s3_staging["client"], s3_staging["bucket"]
    run_on(io, validated, "read")
    root = staging_path(s3_staging["s3_root"], S3_CONN_ID)

    assert remove_stale_staged_runs(root, 7, now=time.time()) == []
    assert keys(client, bucket, prefix), "a run written now is within the retention"

    removed = remove_stale_staged_runs(root, 7, now=time.time() + 8 * 86400)

    assert [r.rsplit("/", 2)[-2:] for r in removed] == [["two_steps", safe_run_id(RUN_ID)]]
    assert keys(client, bucket, "declarative/") == []


def test_the_housekeeping_dag_removes_expired_runs_in_the_bucket(two_steps, s3_staging, airflow_var):
    from etlkit.operators.jobs import StagingHousekeepingOperator

    validated, io, data_root, prefix = two_steps
    client, bucket = s3_staging["client"], s3_staging["bucket"]
    run_on(io, validated, "read")
    housekeeping = StagingHousekeepingOperator(task_id="remove_old_staging")

    assert housekeeping.execute({})["removed_runs"] == 0
    assert keys(client, bucket, prefix)

    # Retention 0: everything written before now has expired.
    staging = {**s3_staging["settings"]["staging"], "retention_days": 0}
    airflow_var("declarative_jobs", {**s3_staging["settings"], "staging": staging})
    result = housekeeping.execute({})

    assert result == {"staging_root": s3_staging["s3_root"], "removed_runs": 1}
    assert keys(client, bucket, "declarative/") == []


# ---- _prepare checks the staging root through the connection, before any data moves ----------------


def prepare_failure(dag_run) -> None:
    """_prepare failed at its first try (no retry), and no component ran."""
    from airflow.utils.session import create_session

    assert dag_run.state == "failed", task_states(dag_run)
    with create_session() as session:
        tis = {ti.task_id: ti for ti in dag_run.get_task_instances(session=session)}
    assert (str(tis["_prepare"].state), tis["_prepare"].try_number) == ("failed", 1)
    assert {str(tis[c].state) for c in ("read_orders", "load_orders")} == {"upstream_failed"}


def open_staging_error(s3_staging, conn_id: str, root: str) -> str:
    from etlkit.common.errors import ConfigurationError
    from etlkit.jobs.environment import RunContext
    from etlkit.jobs.runs import open_run_staging

    run_context = RunContext(
        environment="DEV",
        connections={},
        file_roots={},
        data_root="/data",
        staging_root=root,
        staging_conn_id=conn_id,
        metrics_conn_id="jobs_metrics",
        job_file_sha256="0" * 64,
        prepared_on="here",
        started_at="now",
    )
    with pytest.raises(ConfigurationError) as raised:
        open_run_staging(run_context, "orders_daily_load", RUN_ID)
    return str(raised.value)


def test_a_missing_bucket_fails_prepare_at_once_saying_what_to_check(
    jobs_env, run_dag, s3_staging, airflow_var
):
    missing = f"s3://no-such-{s3_staging['bucket']}/declarative"
    airflow_var(
        "declarative_jobs", {**s3_staging["settings"], "staging": {"root": missing, "conn_id": S3_CONN_ID}}
    )

    prepare_failure(run_dag("orders_daily_load", logical_date=LOGICAL_DATE))

    message = open_staging_error(s3_staging, S3_CONN_ID, missing)
    assert f"cannot write to the staging root {missing} through connection {S3_CONN_ID!r}" in message
    assert "FileNotFoundError" in message and "check that the bucket or directory exists" in message
    client = s3_staging["client"]
    assert f"no-such-{s3_staging['bucket']}" not in {b["Name"] for b in client.list_buckets()["Buckets"]}


def test_refused_credentials_fail_prepare_at_once_without_leaking_them(
    jobs_env, run_dag, s3_staging, s3_endpoint, airflow_conn, airflow_var, monkeypatch
):
    import moto.settings

    refused = "jobs_s3_refused_keys"  # its own id: stores are cached per connection id in a process
    airflow_conn(refused, s3_connection(s3_endpoint, login="AKIAUNKNOWNKEY0001", password="wrong-secret"))
    staging = {**s3_staging["settings"]["staging"], "conn_id": refused}
    airflow_var("declarative_jobs", {**s3_staging["settings"], "staging": staging})
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # the server checks keys now

    prepare_failure(run_dag("orders_daily_load", logical_date=LOGICAL_DATE))

    message = open_staging_error(s3_staging, refused, s3_staging["s3_root"])
    assert f"through connection {refused!r}" in message
    assert "PermissionError" in message and "may read, write and delete under it" in message
    assert "wrong-secret" not in message
