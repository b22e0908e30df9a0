"""_prepare's connection lookup: only a connection no secrets backend has is "missing" (permanent);
a secrets backend that is down is a transient failure that the task's retries cover."""

from __future__ import annotations

import os

import pytest

from dev import jobs_data, pgdb
from dev.sshd import free_port
from etlkit.common.errors import ConfigurationError, TransientError
from etlkit.jobs.environment import resolve_run_context
from etlkit.jobs.settings import JobsSettings
from etlkit.jobs.validation import load_job
from tests.conftest import REPO_ROOT, task_states
from tests.jobs.conftest import DAY, query
from tests.jobs.http_secrets import SecretsServer
from tests.jobs.test_examples_e2e import LOGICAL_DATE

pytestmark = pytest.mark.jobs

ORDERS = load_job(REPO_ROOT / "dags" / "jobs" / "orders_daily_load.json")
PROD = {"environments": {"PROD": {"data_root": "/data/prod", "connections": {"warehouse": "pg_wh_prod"}}}}
BACKEND_ENV = ("AIRFLOW__SECRETS__BACKEND", "AIRFLOW__SECRETS__BACKEND_KWARGS")


@pytest.fixture
def secrets_backend():
    """Configures tests.jobs.http_secrets.HttpSecretsBackend at ``url`` the way a deployment does (config)."""
    from airflow.sdk.configuration import clear_secrets_backends_cache

    def configure(url: str) -> None:
        os.environ[BACKEND_ENV[0]] = "tests.jobs.http_secrets.HttpSecretsBackend"
        os.environ[BACKEND_ENV[1]] = f'{{"url": "{url}"}}'
        clear_secrets_backends_cache()

    yield configure
    for name in BACKEND_ENV:
        os.environ.pop(name, None)
    clear_secrets_backends_cache()


def resolve_prod():
    from etlkit.hooks.jobs import JobFilesHook, connection_type

    settings = JobsSettings.resolve(variable=PROD, read_variable=False, environ={})
    return resolve_run_context(
        ORDERS, settings, "PROD", connection_type, lambda conn_id: JobFilesHook(conn_id).get_conn()
    )


def test_a_secrets_backend_that_is_down_is_a_transient_error_not_a_missing_connection(secrets_backend):
    from airflow.sdk.definitions.retry_policy import RetryAction

    from etlkit.jobs.dag import _default_args

    secrets_backend(f"http://127.0.0.1:{free_port()}")  # nothing listens: connection refused

    with pytest.raises(TransientError) as raised:
        resolve_prod()

    assert (
        "looking up connection 'pg_wh_prod' failed in secrets backend HttpSecretsBackend (URLError)"
        in str(raised.value)
    )
    policy = _default_args(ORDERS)["retry_policy"]
    assert policy.evaluate(raised.value, try_number=1, max_tries=4).action != RetryAction.FAIL


def test_a_connection_that_no_backend_has_is_a_configuration_error(secrets_backend):
    server = SecretsServer({})
    try:
        secrets_backend(server.url)
        with pytest.raises(
            ConfigurationError, match="connection 'pg_wh_prod' for logical name 'warehouse' does not"
        ):
            resolve_prod()
        assert "pg_wh_prod" in server.requests, "the backend was asked"
    finally:
        server.stop()


def test_prepare_retries_while_the_secrets_backend_is_down_then_the_run_loads(
    jobs_env, jobs_db, run_dag, airflow_var, secrets_backend, monkeypatch
):
    from airflow.ti_deps.deps.not_in_retry_period_dep import NotInRetryPeriodDep
    from airflow.utils.session import create_session

    # dag.test() honours the job's 120 s retry delay; this test only skips the wait.
    monkeypatch.setattr(NotInRetryPeriodDep, "_get_dep_statuses", lambda *args, **kwargs: iter(()))
    settings = jobs_env["settings"]
    settings["environments"]["DEV"]["connections"] = {"warehouse": "jobs_warehouse_vault"}
    airflow_var("declarative_jobs", settings)
    from etlkit.hooks import jobs as job_hooks

    server = SecretsServer({"jobs_warehouse_vault": pgdb.postgres_connection(jobs_db)})
    server.down = True
    real_failure_check = job_hooks.secrets_backend_failure

    def comes_back_after_the_failed_lookup(conn_id):
        failure = real_failure_check(conn_id)
        server.down = False
        return failure

    monkeypatch.setattr(job_hooks, "secrets_backend_failure", comes_back_after_the_failed_lookup)
    jobs_data.write_orders_export(jobs_env["data_root"], DAY)
    try:
        secrets_backend(server.url)
        dag_run = run_dag("orders_daily_load", logical_date=LOGICAL_DATE)
    finally:
        server.stop()

    assert dag_run.state == "success", task_states(dag_run)
    with create_session() as session:
        tries = {ti.task_id: ti.try_number for ti in dag_run.get_task_instances(session=session)}
    assert tries["_prepare"] == 2
    assert query(jobs_env["dsn"], "SELECT order_id FROM sales.orders ORDER BY 1") == [
        (1001,),
        (1003,),
        (1006,),
    ]
