"""EtlPostgresHook: the PostgreSQL hook of every pipeline, against the local PostgreSQL."""

from __future__ import annotations

import pytest
from psycopg import sql

from dev import pgdb
from etlkit.common.errors import ConfigurationError
from etlkit.common.retry import classify
from etlkit.hooks.postgres import EtlPostgresHook


def test_sessions_run_in_utc_under_the_pipelines_name(airflow_conn, pg_database, pg_conn):
    database = sql.Identifier(pg_database)
    pg_conn.execute(sql.SQL("ALTER DATABASE {} SET TimeZone = 'America/Lima'").format(database))
    try:
        airflow_conn("warehouse_test", pgdb.postgres_connection(pg_database))
        with EtlPostgresHook("warehouse_test", application_name="etlkit_visits").get_conn() as connection:
            zone, name = connection.execute(
                "SELECT current_setting('TimeZone'), current_setting('application_name')"
            ).fetchone()
        assert (zone, name) == ("UTC", "etlkit_visits")
    finally:
        pg_conn.execute(sql.SQL("ALTER DATABASE {} RESET TimeZone").format(database))


def test_the_ui_test_button_succeeds_and_reports_a_refused_login(airflow_conn, pg_database):
    airflow_conn("warehouse_test", pgdb.postgres_connection(pg_database))
    assert EtlPostgresHook("warehouse_test").test_connection()[0] is True
    airflow_conn("warehouse_test", {**pgdb.postgres_connection(pg_database), "login": "etlkit_no_such_role"})
    ok, message = EtlPostgresHook("warehouse_test").test_connection()
    assert ok is False and "etlkit_no_such_role" in message


def test_a_connection_that_is_not_postgres_fails_at_once_with_the_remedy(airflow_conn):
    airflow_conn("warehouse_test", {"conn_type": "mysql", "host": "127.0.0.1", "port": 3306})
    with pytest.raises(ConfigurationError, match="must be PostgreSQL") as raised:
        EtlPostgresHook("warehouse_test").require_postgres("the warehouse")
    assert classify(raised.value) == "permanent"
