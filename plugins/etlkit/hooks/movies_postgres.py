"""PostgreSQL hook for the movies source: every connection in UTC, with a connect timeout and a name."""

from __future__ import annotations

from typing import Any

from airflow.providers.postgres.hooks.postgres import PostgresHook


class MoviesPostgresHook(PostgresHook):
    """``PostgresHook`` whose connections read timestamps in UTC (``timestamp`` columns are taken as UTC),
    time out after 10 s and show up as ``movies_etl`` in ``pg_stat_activity``."""

    CONNECT_TIMEOUT_S = 10
    APPLICATION_NAME = "movies_etl"

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("options", "-c TimeZone=UTC")
        super().__init__(*args, **kwargs)

    def _create_connection(self, conn_args: dict[str, Any]):
        conn_args.setdefault("connect_timeout", self.CONNECT_TIMEOUT_S)
        conn_args.setdefault("application_name", self.APPLICATION_NAME)
        return super()._create_connection(conn_args)
