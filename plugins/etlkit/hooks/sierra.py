"""SierraDNA (PostgreSQL, read only): one REPEATABLE READ, READ ONLY snapshot per batch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

from etlkit.common.errors import ConfigurationError
from etlkit.hooks.postgres import EtlPostgresHook
from etlkit.sierra.extract import SierraSnapshot, open_snapshot

# What a sync needs of the role: read sierra_view, create the batch's temp table.
PRIVILEGES_SQL = """
SELECT has_schema_privilege('sierra_view', 'USAGE'),
       has_database_privilege(current_database(), 'TEMPORARY')
"""


class SierraHook(EtlPostgresHook):
    """The Sierra DB; the connection's extras may set ``application_name``, ``sslmode`` and
    ``connect_timeout`` (10 s unless set).

    The role needs SELECT on ``sierra_view`` and the database's TEMPORARY privilege. Sessions keep
    the database's own ``TimeZone``: every bound is a ``timestamptz``, and the production database's
    session settings stay as its administrators set them (the snapshot logs the TimeZone).
    """

    conn_name_attr = "postgres_conn_id"
    default_conn_name = "sierra_dna"
    conn_type = "postgres"
    hook_name = "Sierra DNA"

    def __init__(self, postgres_conn_id: str = default_conn_name, **kwargs: Any):
        kwargs.setdefault("options", None)  # no TimeZone=UTC (see the class docstring)
        kwargs.setdefault("application_name", "etlkit_sierra")
        super().__init__(postgres_conn_id, **kwargs)

    def check_connection(self) -> None:
        """Resolve the connection before any request. Its port is required: SierraDNA usually
        listens on 1032, and a missing port would silently mean PostgreSQL's 5432."""
        if not self.get_connection(self.postgres_conn_id).port:
            raise ConfigurationError(
                f"connection {self.postgres_conn_id!r} has no port (SierraDNA usually listens on 1032)"
            )

    def test_connection(self) -> tuple[bool, str]:
        """The UI's Test button: the port, a session, and the two privileges a sync needs."""
        try:
            self.check_connection()
            with closing(self.get_conn()) as conn:
                reads, temporary = conn.execute(PRIVILEGES_SQL).fetchone()
        except Exception as exc:  # the button shows why; psycopg's messages hold no password
            return False, f"{type(exc).__name__}: {exc}".strip()
        if not reads:
            return False, "connected, but the role may not use schema sierra_view"
        if not temporary:
            return False, "connected, but the role may not create TEMP tables: GRANT TEMPORARY ON DATABASE"
        return True, "connected; the role may read sierra_view and create the batch's TEMP table"

    @contextmanager
    def snapshot(self, statement_timeout_seconds: float) -> Iterator[SierraSnapshot]:
        """A fresh connection and transaction for one batch; closed on every path. A batch copied in
        parts opens further connections to the same database."""
        with open_snapshot(self.get_conn(), statement_timeout_seconds, connect=self.get_conn) as snap:
            yield snap
