"""SierraDNA (PostgreSQL, read only): one REPEATABLE READ, READ ONLY snapshot per batch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airflow.providers.postgres.hooks.postgres import PostgresHook

from etlkit.common.errors import ConfigurationError
from etlkit.sierra.extract import SierraSnapshot, open_snapshot


class SierraHook(PostgresHook):
    """The Sierra DB; the connection's extras carry ``application_name`` and ``sslmode``.

    The role needs SELECT on ``sierra_view`` only.
    """

    hook_name = "Sierra DNA"

    def __init__(self, sierra_conn_id: str = "sierra_dna", **kwargs):
        super().__init__(postgres_conn_id=sierra_conn_id, **kwargs)

    def check_connection(self) -> None:
        """Resolve the connection before any request. Its port is required: SierraDNA usually
        listens on 1032, and a missing port would silently mean PostgreSQL's 5432."""
        if not self.get_connection(self.postgres_conn_id).port:
            raise ConfigurationError(
                f"connection {self.postgres_conn_id!r} has no port (SierraDNA usually listens on 1032)"
            )

    @contextmanager
    def snapshot(self, statement_timeout_seconds: float) -> Iterator[SierraSnapshot]:
        """A fresh connection and transaction for one batch; closed on every path. A batch copied in
        parts opens further connections to the same database."""
        with open_snapshot(self.get_conn(), statement_timeout_seconds, connect=self.get_conn) as snap:
            yield snap
