"""The two hooks own their connections: declared ids, nothing opened early, the UI's Test button."""

from __future__ import annotations

import pytest

from dev import pgdb
from dev.sierra_data import READER_ROLE
from dev.sshd import free_port
from tests.sierra.conftest import API_KEY, sierra_sessions

pytestmark = pytest.mark.sierra


def test_hooks_declare_their_connections_and_the_operator_defaults_to_them():
    from etlkit.hooks.postgres import EtlPostgresHook
    from etlkit.hooks.sierra import SierraHook
    from etlkit.hooks.signum import SignumBackendHook
    from etlkit.operators.sierra import SierraSignumSyncOperator

    assert issubclass(SierraHook, EtlPostgresHook)
    declared = [
        (hook.conn_name_attr, hook.default_conn_name, hook.conn_type, hook.hook_name)
        for hook in (SierraHook, SignumBackendHook)
    ]
    assert declared == [
        ("postgres_conn_id", "sierra_dna", "postgres", "Sierra DNA"),
        ("http_conn_id", "signum_backend", "http", "Signum backend"),
    ]
    operator = SierraSignumSyncOperator(task_id="sync_items")
    assert (operator.sierra_conn_id, operator.backend_conn_id) == (
        SierraHook.default_conn_name,
        SignumBackendHook.default_conn_name,
    )
    assert set(SierraSignumSyncOperator.template_fields) == {"sierra_conn_id", "backend_conn_id"}
    # Airflow builds a hook from a connection as hook_class(**{conn_name_attr: conn_id}).
    assert SierraHook(postgres_conn_id="x").postgres_conn_id == "x"
    assert SignumBackendHook(http_conn_id="y").http_conn_id == "y"


def test_creating_the_hooks_opens_nothing(monkeypatch):
    """No connection is looked up (none is defined here) and no session opened before it is used."""
    from etlkit.hooks.sierra import SierraHook
    from etlkit.hooks.signum import SignumBackendHook

    monkeypatch.delenv("AIRFLOW_CONN_SIERRA_DNA", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_SIGNUM_BACKEND", raising=False)
    sierra, backend = SierraHook(), SignumBackendHook()
    assert sierra.conn is None and backend._api_key is None


def test_sierra_sessions_keep_the_databases_timezone_and_name_themselves(sierra, sierra_dbname, airflow_conn):
    from etlkit.hooks.sierra import SierraHook

    sierra.execute(f"ALTER ROLE {READER_ROLE} SET timezone = 'Europe/Helsinki'")
    try:
        airflow_conn("sierra_dna", {**pgdb.postgres_connection(sierra_dbname), "login": READER_ROLE})
        with SierraHook().get_conn() as conn:
            settings = conn.execute(
                "SELECT current_setting('TimeZone'), current_setting('application_name')"
            ).fetchone()
    finally:
        sierra.execute(f"ALTER ROLE {READER_ROLE} RESET timezone")
    assert settings == ("Europe/Helsinki", "etlkit_sierra")


def test_sierra_test_connection(sierra, sierra_dbname, airflow_conn):
    from etlkit.hooks.sierra import SierraHook

    good = {**pgdb.postgres_connection(sierra_dbname), "login": READER_ROLE}
    airflow_conn("sierra_dna", good)
    ok, message = SierraHook().test_connection()
    assert ok, message
    assert "sierra_view" in message

    airflow_conn("sierra_dna", {**good, "login": "etlkit_no_such_role", "password": "s3cret-pw-991"})
    ok, message = SierraHook().test_connection()
    assert not ok and "etlkit_no_such_role" in message and "s3cret-pw-991" not in message

    airflow_conn("sierra_dna", {**good, "port": free_port()})
    ok, message = SierraHook().test_connection()
    assert not ok and "OperationalError" in message

    without_port = dict(good)
    without_port.pop("port")
    airflow_conn("sierra_dna", without_port)
    ok, message = SierraHook().test_connection()
    assert not ok and "has no port" in message

    airflow_conn("sierra_dna", {**pgdb.postgres_connection("postgres"), "login": READER_ROLE})
    ok, message = SierraHook().test_connection()
    assert not ok and "sierra_view" in message  # a database without it
    assert sierra_sessions(sierra) == 0


def test_signum_test_connection(backend, backend_server, airflow_conn):
    from etlkit.hooks.signum import SignumBackendHook

    airflow_conn("signum_backend", backend_server.connection(API_KEY))
    ok, message = SignumBackendHook().test_connection()
    assert (ok, message) == (True, "GET /sync answered: SYNC_FULL batch_size=10 last_synced_id=0")
    assert [r["method"] for r in backend.requests] == ["GET"] and backend.sync_mode == "SYNC_FULL"

    airflow_conn("signum_backend", backend_server.connection("wrong-key-5521"))
    ok, message = SignumBackendHook().test_connection()
    assert not ok and "HTTP 403" in message and "wrong-key-5521" not in message

    airflow_conn("signum_backend", {**backend_server.connection(API_KEY), "port": free_port()})
    ok, message = SignumBackendHook().test_connection()
    assert not ok and "ConnectionError" in message and API_KEY not in message

    airflow_conn("signum_backend", backend_server.connection(None))
    ok, message = SignumBackendHook().test_connection()
    assert not ok and "no API key" in message
