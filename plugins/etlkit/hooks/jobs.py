"""The connections of declarative jobs: a job's ``fs`` file roots (``JobFilesHook``), the lookup that
tells a missing connection from a secrets backend that failed to answer, the PostgreSQL sessions of
``read_sql`` / ``write_sql`` and of the metrics tables (``EtlPostgresHook``), and the ``RuntimeIO``
through which a component task reaches them."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from airflow.sdk import BaseHook

from etlkit.common.errors import ConfigurationError, TransientError
from etlkit.jobs.environment import RunContext

log = logging.getLogger(__name__)


class JobFilesHook(BaseHook):
    """An ``fs`` connection whose extra ``path`` is the root of a job's file components' paths."""

    conn_name_attr = "fs_conn_id"
    default_conn_name = "fs_default"
    conn_type = "fs"
    hook_name = "File root (etlkit jobs)"

    def __init__(self, fs_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.fs_conn_id = fs_conn_id

    def get_conn(self) -> str | None:
        """The root path (None when the extra has no ``path``)."""
        return self.get_connection(self.fs_conn_id).extra_dejson.get("path")

    def test_connection(self) -> tuple[bool, str]:
        try:
            root = self.get_conn()
        except Exception as error:
            return False, f"connection {self.fs_conn_id!r}: {type(error).__name__}"
        if not root:
            return False, f"connection {self.fs_conn_id!r} has no 'path' in its extra"
        if not os.path.isdir(root):
            return False, f"root {root} is not a directory on this host"
        return True, f"root {root} is a directory"


def connection_type(conn_id: str) -> str | None:
    """The connection's type; None only when every secrets backend answered that it has no ``conn_id``.

    Any other failure of the lookup (a secrets backend down or timing out) is a TransientError,
    so the task is retried instead of failing for good with "connection does not exist".
    """
    from airflow.sdk.exceptions import AirflowNotFoundException, AirflowSecretsBackendAccessDenied

    try:
        return BaseHook.get_connection(conn_id).conn_type
    except AirflowSecretsBackendAccessDenied as error:
        raise ConfigurationError(
            f"access to connection {conn_id!r} was denied by the secrets backend: grant this task access to it"
        ) from error
    except AirflowNotFoundException:
        # The SDK skips a backend that raised and reports "isn't defined" when no later one has the id.
        if failure := secrets_backend_failure(conn_id):
            backend, error = failure
            raise TransientError(
                f"looking up connection {conn_id!r} failed in secrets backend {backend} "
                f"({type(error).__name__}); it is not reported as missing, the task is retried"
            ) from error
        return None


def secrets_backend_failure(conn_id: str) -> tuple[str, Exception] | None:
    """(backend name, error) of the first secrets backend that fails to answer for ``conn_id``."""
    from airflow.sdk.execution_time.secrets.execution_api import ExecutionAPISecretsBackend
    from airflow.sdk.execution_time.supervisor import ensure_secrets_backend_loaded

    for backend in ensure_secrets_backend_loaded():
        try:
            if isinstance(backend, ExecutionAPISecretsBackend):
                _ask_execution_api(conn_id)
            else:
                backend.get_connection(conn_id=conn_id)
        except Exception as error:
            return type(backend).__name__, error
    return None


def _ask_execution_api(conn_id: str) -> None:
    """The API server's answer for ``conn_id``: a missing connection is an error reply, while a
    failure of the API server raises (the backend class itself turns both into None)."""
    from airflow.sdk.execution_time.comms import GetConnection
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    SUPERVISOR_COMMS.send(GetConnection(conn_id=conn_id))


@contextlib.contextmanager
def postgres_session(conn_id: str) -> Iterator[Any]:
    """An open psycopg connection in autocommit: every unit of work opens its own ``transaction()``."""
    from etlkit.hooks.postgres import EtlPostgresHook

    connection = EtlPostgresHook(conn_id, application_name="etlkit_jobs").get_conn()
    connection.autocommit = True
    try:
        yield connection
    finally:
        connection.close()


def write_metrics(conn_id: str, failure: str, write, *args: Any) -> None:
    """``write(connection, *args)`` on the metrics database, where a failure must not fail the task:
    it is logged as a warning, ``could not <failure>`` (``_finalize`` writes every row again and fails
    visibly)."""
    try:
        with postgres_session(conn_id) as connection:
            write(connection, *args)
    except Exception as error:
        log.warning("could not %s: %s", failure, error)


def component_io(
    run_context: RunContext, render: Callable[[Any], Any], dag_id: str, run_id: str, logical_date
):
    """The ``RuntimeIO`` of a component task: staging of the run, paths under the context's roots,
    SQL through the resolved connection ids, values rendered by the task's template context."""
    from etlkit.jobs.runtime import RuntimeIO  # pyarrow: not at DAG parse time
    from etlkit.jobs.sqlwrite import logical_run_key
    from etlkit.jobs.staging import staging_path

    return RuntimeIO(
        run_dir=staging_path(run_context.run_dir, run_context.staging_conn_id),
        resolve_path=lambda path, conn: run_context.file_path(render(path), conn),
        sql_connection=lambda conn: postgres_session(run_context.connections[conn]),
        render=render,
        staging_root=run_context.staging_root,
        prepared_on=run_context.prepared_on,
        run_key=logical_run_key(dag_id, run_id, logical_date),
    )
