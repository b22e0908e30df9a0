"""The PostgreSQL hook every pipeline opens its databases with (the Sierra source keeps its own
read-only snapshot hook on top of it)."""

from __future__ import annotations

from typing import Any

from airflow.providers.postgres.hooks.postgres import PostgresHook

from etlkit.common.errors import ConfigurationError


class EtlPostgresHook(PostgresHook):
    """``PostgresHook`` whose sessions run in UTC (``timestamp`` values are read and written as UTC
    whatever the server's default), give up connecting after ``CONNECT_TIMEOUT_S`` and show up in
    ``pg_stat_activity`` under ``application_name``. A connection's own extras win over both.

    The UI's Test button runs ``test_connection`` (``SELECT 1``), inherited from the DB-API hook."""

    conn_name_attr = "postgres_conn_id"
    default_conn_name = "postgres_default"
    conn_type = "postgres"
    hook_name = "PostgreSQL (etlkit)"

    CONNECT_TIMEOUT_S = 10

    def __init__(
        self, postgres_conn_id: str = default_conn_name, *, application_name: str = "etlkit", **kwargs: Any
    ):
        kwargs.setdefault("options", "-c TimeZone=UTC")
        super().__init__(postgres_conn_id=postgres_conn_id, **kwargs)
        self.application_name = application_name

    def _create_connection(self, conn_args: dict[str, Any]):
        conn_args.setdefault("connect_timeout", self.CONNECT_TIMEOUT_S)
        conn_args.setdefault("application_name", self.application_name)
        return super()._create_connection(conn_args)

    def require_postgres(self, purpose: str) -> None:
        """Fail before any work when the connection is not PostgreSQL (a permanent cause)."""
        connection = self.get_connection(self.postgres_conn_id)
        if connection.conn_type not in ("postgres", "postgresql"):
            raise ConfigurationError(
                f"connection {self.postgres_conn_id!r} is {connection.conn_type!r}: {purpose} must be "
                "PostgreSQL; point the connection at a PostgreSQL database"
            )
