"""SierraDNA (PostgreSQL, read only): one REPEATABLE READ, READ ONLY snapshot per batch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airflow.providers.postgres.hooks.postgres import PostgresHook

from etlkit.sierra.extract import SierraSnapshot, open_snapshot


class SierraHook(PostgresHook):
    """The Sierra DB; the connection's extras carry ``application_name`` and ``sslmode``.

    The role needs SELECT on ``sierra_view`` only.
    """

    hook_name = "Sierra DNA"

    def __init__(self, sierra_conn_id: str = "sierra_dna", **kwargs):
        super().__init__(postgres_conn_id=sierra_conn_id, **kwargs)

    @contextmanager
    def snapshot(self, statement_timeout_seconds: float) -> Iterator[SierraSnapshot]:
        """A fresh connection and transaction for one batch; closed on every path. A batch copied in
        parts opens further connections to the same database."""
        with open_snapshot(self.get_conn(), statement_timeout_seconds, connect=self.get_conn) as snap:
            yield snap
