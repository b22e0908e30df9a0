"""One rule for what is retried, checked on REAL exceptions raised by psycopg, requests, paramiko and the
Elasticsearch client against local services (PostgreSQL, the harness sshd, dev/es_server.py, a tiny HTTP
server), each mapped to its class, plus the decision of the pipelines' retry policy for each."""

from __future__ import annotations

import base64
import builtins
import json
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
from airflow.sdk.definitions.retry_policy import RetryAction
from psycopg import sql

from dev import pgdb
from dev.es_server import EsSubsetServer
from dev.sshd import SshServer, free_port
from etlkit.common.retry_policy import PipelineRetryPolicy

ES_PASSWORD = "wr0ng-pass-17"


class StatusHandler(BaseHTTPRequestHandler):
    """``/status/<code>/...`` answers that code; ``/slow/...`` answers after 3 s; ``/truncate`` drops the body."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if parts and parts[0] == "slow":
            time.sleep(3)
            self._answer(200)
        elif parts and parts[0] == "truncate":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"partial": ')
            self.close_connection = True
        elif len(parts) >= 2 and parts[0] == "status":
            self._answer(int(parts[1]))
        else:
            self._answer(200)

    do_POST = do_GET

    def _answer(self, status: int):
        body = json.dumps({"detail": f"status {status}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class Services:
    pg_db: str
    weak_role: str
    nologin_role: str
    http_url: str
    closed_port: int
    sshd: SshServer
    wrong_client_key: Path
    other_host_key: Path
    es: EsSubsetServer
    airflow_conn: Callable[[str, dict], None]

    def dsn(self, **overrides) -> str:
        params = {"host": pgdb.PG_HOST, "port": pgdb.PG_PORT, "user": pgdb.PG_USER, "dbname": self.pg_db}
        params.update(overrides)
        return " ".join(f"{k}={v}" for k, v in params.items()) + " connect_timeout=5"

    def connect(self, **overrides) -> psycopg.Connection:
        return psycopg.connect(self.dsn(**overrides), autocommit=True)


@pytest.fixture(scope="module")
def pg_scratch() -> Iterator[tuple[str, str, str]]:
    """A scratch database with a table, a login role without privileges and a NOLOGIN role."""
    suffix = uuid.uuid4().hex[:8]
    weak, nologin = f"etlkit_weak_{suffix}", f"etlkit_nologin_{suffix}"
    with pgdb.temporary_database("etlkit_retry") as name:
        with psycopg.connect(pgdb.dsn("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(weak)))
            admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(nologin)))
        try:
            with psycopg.connect(pgdb.dsn(name), autocommit=True) as conn:
                conn.execute("CREATE TABLE guarded (id int PRIMARY KEY, note text NOT NULL)")
                conn.execute("INSERT INTO guarded VALUES (1, 'a'), (2, 'b')")
            yield name, weak, nologin
        finally:
            pgdb.drop_database(name)
            with psycopg.connect(pgdb.dsn("postgres"), autocommit=True) as admin:
                for role in (weak, nologin):
                    admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StatusHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def es() -> Iterator[EsSubsetServer]:
    server = EsSubsetServer(8).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stray_keys(tmp_path_factory) -> tuple[Path, Path]:
    """A client key the sshd does not know, and an ed25519 host key that is not the server's."""
    root = tmp_path_factory.mktemp("stray_keys")
    paths = root / "client", root / "host"
    for path in paths:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return paths


@pytest.fixture
def services(pg_scratch, http_server, es, sshd, stray_keys, airflow_conn) -> Iterator[Services]:
    es.cluster.reset()
    yield Services(
        pg_db=pg_scratch[0],
        weak_role=pg_scratch[1],
        nologin_role=pg_scratch[2],
        http_url=http_server,
        closed_port=free_port(),
        sshd=sshd,
        wrong_client_key=stray_keys[0],
        other_host_key=stray_keys[1],
        es=es,
        airflow_conn=airflow_conn,
    )
    es.cluster.reset()


# ---- provokers: each makes the real library fail against a real service --------------------------------


def pg_missing_role(s: Services):
    psycopg.connect(s.dsn(user="etlkit_no_such_role"))


def pg_nologin_role(s: Services):
    psycopg.connect(s.dsn(user=s.nologin_role))


def pg_missing_database(s: Services):
    psycopg.connect(s.dsn(dbname="etlkit_no_such_database"))


def pg_closed_port(s: Services):
    psycopg.connect(s.dsn(port=s.closed_port))


def pg_connect_privilege_revoked(s: Services):
    with s.connect() as conn:
        conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(sql.Identifier(s.pg_db)))
    try:
        psycopg.connect(s.dsn(user=s.weak_role))
    finally:
        with s.connect() as conn:
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(sql.Identifier(s.pg_db)))


def pg_insufficient_privilege(s: Services):
    with s.connect(user=s.weak_role) as conn:
        conn.execute("SELECT * FROM guarded")


def pg_undefined_table(s: Services):
    with s.connect() as conn:
        conn.execute("SELECT * FROM no_such_table")


def pg_undefined_function(s: Services):
    with s.connect() as conn:
        conn.execute("SELECT no_such_function(1)")


def pg_syntax_error(s: Services):
    with s.connect() as conn:
        conn.execute("SELEC 1")


def pg_unique_violation(s: Services):
    with s.connect() as conn:
        conn.execute("INSERT INTO guarded VALUES (1, 'again')")


def pg_invalid_text(s: Services):
    with s.connect() as conn:
        conn.execute("SELECT 'abc'::int")


def pg_lock_timeout(s: Services):
    with s.connect() as holder, s.connect() as waiter:
        holder.execute("BEGIN")
        holder.execute("SELECT * FROM guarded WHERE id = 1 FOR UPDATE")
        try:
            waiter.execute("SET lock_timeout = '100ms'")
            waiter.execute("UPDATE guarded SET note = 'x' WHERE id = 1")
        finally:
            holder.execute("ROLLBACK")


def pg_statement_timeout(s: Services):
    with s.connect() as conn:
        conn.execute("SET statement_timeout = '50ms'")
        conn.execute("SELECT pg_sleep(2)")


def pg_serialization_failure(s: Services):
    with s.connect() as first, s.connect() as second:
        first.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        first.execute("SELECT note FROM guarded WHERE id = 2")
        second.execute("UPDATE guarded SET note = note WHERE id = 2")
        try:
            first.execute("UPDATE guarded SET note = 'b' WHERE id = 2")
        finally:
            first.execute("ROLLBACK")


def pg_deadlock(s: Services):
    with s.connect() as first, s.connect() as second:
        first.execute("BEGIN")
        second.execute("BEGIN")
        first.execute("UPDATE guarded SET note = note WHERE id = 1")
        second.execute("UPDATE guarded SET note = note WHERE id = 2")
        errors: list[BaseException] = []

        def cross(conn, row):
            try:
                conn.execute("UPDATE guarded SET note = note WHERE id = %s", (row,))
            except psycopg.Error as exc:
                errors.append(exc)
            finally:
                conn.execute("ROLLBACK")

        threads = [threading.Thread(target=cross, args=(c, r)) for c, r in ((first, 2), (second, 1))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        raise errors[0]


def pg_admin_shutdown(s: Services):
    with s.connect() as victim, s.connect() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (victim.info.backend_pid,))
        time.sleep(0.2)
        victim.execute("SELECT 1")


def requests_get(url: str, timeout=5):
    import requests

    requests.get(url, timeout=timeout).raise_for_status()


def http_closed_port(s: Services):
    requests_get(f"http://127.0.0.1:{s.closed_port}/")


def http_read_timeout(s: Services):
    requests_get(f"{s.http_url}/slow", timeout=(5, 0.3))


def http_truncated_body(s: Services):
    requests_get(f"{s.http_url}/truncate")


def http_status(status: int):
    def provoke(s: Services):
        requests_get(f"{s.http_url}/status/{status}")

    provoke.__name__ = f"http_{status}"
    return provoke


def http_hook_status(status: int):
    """Airflow's HttpHook hides the status in ``AirflowException("503:Service Unavailable")``."""

    def provoke(s: Services):
        from airflow.providers.http.hooks.http import HttpHook

        s.airflow_conn("etlkit_status_http", {"conn_type": "http", "host": f"{s.http_url}/status/{status}"})
        HttpHook(method="GET", http_conn_id="etlkit_status_http").run("probe")

    return provoke


def signum_hook_status(status: int):
    """The Signum hook raises BackendHttpError carrying the real status."""

    def provoke(s: Services):
        from etlkit.hooks.signum import SignumBackendHook

        s.airflow_conn(
            "etlkit_status_signum",
            {"conn_type": "http", "host": f"{s.http_url}/status/{status}", "password": "k-123"},
        )
        SignumBackendHook("etlkit_status_signum").get_sync()

    return provoke


def ssh_client(s: Services, *, key: Path, host_key: Path | None = None, port: int | None = None):
    import paramiko

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key_type, key_data = s.sshd.host_public_key.split()[:2]
    if host_key is not None:
        key_type, key_data = host_key.with_suffix(".pub").read_text().split()[:2]
    pinned = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_data))
    client.get_host_keys().add(f"[127.0.0.1]:{s.sshd.port}", key_type, pinned)
    try:
        client.connect(
            "127.0.0.1",
            port=port or s.sshd.port,
            username=s.sshd.user,
            key_filename=str(key),
            look_for_keys=False,
            allow_agent=False,
            timeout=5,
        )
        return client.open_sftp()
    except BaseException:
        client.close()
        raise


def ssh_wrong_key(s: Services):
    ssh_client(s, key=s.wrong_client_key)


def ssh_wrong_host_key(s: Services):
    ssh_client(s, key=s.sshd.client_key_path, host_key=s.other_host_key)


def ssh_closed_port(s: Services):
    ssh_client(s, key=s.sshd.client_key_path, port=s.closed_port)


def sftp_missing_file(s: Services):
    sftp = ssh_client(s, key=s.sshd.client_key_path)
    try:
        sftp.stat("/no/such/report_1.txt")
    finally:
        sftp.get_channel().get_transport().close()


def sftp_hook_wrong_key(s: Services):
    from etlkit.hooks.sftp import VerifiedSFTPHook

    s.airflow_conn("etlkit_wrong_key_sftp", s.sshd.connection(key_file=str(s.wrong_client_key)))
    with VerifiedSFTPHook(ssh_conn_id="etlkit_wrong_key_sftp").verified_client():
        pass


def es_client(s: Services, **conn):
    from etlkit.hooks.elasticsearch import ElasticsearchClientHook

    s.airflow_conn(
        "etlkit_es",
        {
            "conn_type": "elasticsearch",
            "host": "127.0.0.1",
            "port": s.es.port,
            "extra": {"compatible_with": 8},
        }
        | conn,
    )
    return ElasticsearchClientHook("etlkit_es").get_client()


def es_unauthorized(s: Services):
    s.es.cluster.require_basic_auth("elastic", "right-pass-42")
    with es_client(s, login="elastic", password=ES_PASSWORD) as client:
        client.count(index="movies")


def es_closed_port(s: Services):
    with es_client(s, port=s.closed_port) as client:
        client.count(index="movies")


def es_status(status: int):
    def provoke(s: Services):
        with es_client(s) as client:
            client.indices.create(index="movies_x")
            s.es.cluster.fail_next("count", count=10, status=status)  # beyond the transport's own retries
            client.count(index="movies_x")

    return provoke


def es_missing_index(s: Services):
    with es_client(s) as client:
        client.count(index="no_such_index")


def es_read_timeout(s: Services):
    import elasticsearch

    with elasticsearch.Elasticsearch(f"{s.http_url}/slow", request_timeout=0.3, max_retries=0) as client:
        client.info()


def airflow_missing_connection(s: Services):
    from airflow.sdk import BaseHook

    BaseHook.get_connection("etlkit_no_such_connection")


def plain_bug(s: Services):
    len(5)  # a TypeError: retrying a bug five times only delays the alert


def injected_crash(s: Services):
    from etlkit.common.errors import InjectedFault

    raise InjectedFault("process killed before commit")


def wrapped_network_error(s: Services):
    from airflow.sdk.exceptions import AirflowException

    try:
        requests_get(f"http://127.0.0.1:{s.closed_port}/")
    except Exception as exc:
        raise AirflowException("GET /sync failed") from exc


def bug_while_handling_network_error(s: Services):
    try:
        requests_get(f"http://127.0.0.1:{s.closed_port}/")
    except Exception as exc:
        exc.no_such_attribute()  # AttributeError raised while handling the ConnectionError


@dataclass(frozen=True)
class Row:
    provoke: Callable[[Services], None]
    raised: str  # the library type the service really raised (dotted path)
    kind: str  # transient | permanent
    remedy: str = ""  # a fragment the permanent reason must carry

    @property
    def id(self) -> str:
        return self.provoke.__name__ if self.provoke.__name__ != "provoke" else self.raised


def row(provoke, raised, kind, remedy="", name=None):
    if name:
        provoke.__name__ = name
    return Row(provoke, raised, kind, remedy)


TABLE = [
    # PostgreSQL (psycopg 3)
    row(pg_missing_role, "psycopg.OperationalError", "permanent", "fix the connection's login/password"),
    row(pg_nologin_role, "psycopg.OperationalError", "permanent", "fix the connection's login/password"),
    row(pg_missing_database, "psycopg.OperationalError", "permanent", "fix the database name"),
    row(pg_connect_privilege_revoked, "psycopg.OperationalError", "permanent", "GRANT CONNECT"),
    row(
        pg_insufficient_privilege, "psycopg.errors.InsufficientPrivilege", "permanent", "GRANT the privilege"
    ),
    row(pg_undefined_table, "psycopg.errors.UndefinedTable", "permanent", "create the object"),
    row(pg_undefined_function, "psycopg.errors.UndefinedFunction", "permanent", "create the object"),
    row(pg_syntax_error, "psycopg.errors.SyntaxError", "permanent", "fix the SQL"),
    row(pg_unique_violation, "psycopg.errors.UniqueViolation", "permanent", "fix the input data"),
    row(pg_invalid_text, "psycopg.errors.InvalidTextRepresentation", "permanent", "fix the input data"),
    row(pg_closed_port, "psycopg.OperationalError", "transient"),
    row(pg_lock_timeout, "psycopg.errors.LockNotAvailable", "transient"),
    row(pg_statement_timeout, "psycopg.errors.QueryCanceled", "transient"),
    row(pg_serialization_failure, "psycopg.errors.SerializationFailure", "transient"),
    row(pg_deadlock, "psycopg.errors.DeadlockDetected", "transient"),
    row(pg_admin_shutdown, "psycopg.errors.AdminShutdown", "transient"),
    # HTTP (requests, Airflow's HttpHook, the Signum hook)
    row(http_closed_port, "requests.exceptions.ConnectionError", "transient"),
    row(http_read_timeout, "requests.exceptions.ReadTimeout", "transient"),
    row(http_truncated_body, "requests.exceptions.ChunkedEncodingError", "transient"),
    row(http_status(503), "requests.exceptions.HTTPError", "transient", name="http_503"),
    row(http_status(429), "requests.exceptions.HTTPError", "transient", name="http_429"),
    row(
        http_status(401), "requests.exceptions.HTTPError", "permanent", "login/password or token", "http_401"
    ),
    row(http_status(403), "requests.exceptions.HTTPError", "permanent", "lacks a privilege", "http_403"),
    row(http_status(404), "requests.exceptions.HTTPError", "permanent", "does not exist", "http_404"),
    row(http_status(400), "requests.exceptions.HTTPError", "permanent", "fix the request", "http_400"),
    row(http_hook_status(503), "airflow.sdk.exceptions.AirflowException", "transient", name="http_hook_503"),
    row(
        http_hook_status(401),
        "airflow.sdk.exceptions.AirflowException",
        "permanent",
        "login/password or token",
        "http_hook_401",
    ),
    row(signum_hook_status(502), "etlkit.sierra.protocol.BackendHttpError", "transient", name="signum_502"),
    row(
        signum_hook_status(403),
        "etlkit.sierra.protocol.BackendHttpError",
        "permanent",
        "lacks a privilege",
        "signum_403",
    ),
    # SSH (paramiko against the harness sshd)
    row(ssh_wrong_key, "paramiko.AuthenticationException", "permanent", "key_file/private_key or password"),
    row(ssh_wrong_host_key, "paramiko.BadHostKeyException", "permanent", "update the connection's host_key"),
    row(ssh_closed_port, "paramiko.ssh_exception.NoValidConnectionsError", "transient"),
    row(sftp_missing_file, "FileNotFoundError", "permanent", "fix the configured path"),
    row(sftp_hook_wrong_key, "etlkit.common.errors.ConfigurationError", "permanent", "key_file/private_key"),
    # Elasticsearch (the official client against dev/es_server.py)
    row(es_unauthorized, "elasticsearch.AuthenticationException", "permanent", "login/password or token"),
    row(es_missing_index, "elasticsearch.NotFoundError", "permanent", "does not exist"),
    row(es_status(429), "elasticsearch.ApiError", "transient", name="es_429"),
    row(es_status(503), "elasticsearch.ApiError", "transient", name="es_503"),
    row(es_closed_port, "elastic_transport.ConnectionError", "transient"),
    row(es_read_timeout, "elastic_transport.ConnectionTimeout", "transient"),
    # Airflow, plain Python, and chains
    row(airflow_missing_connection, "airflow.sdk.exceptions.AirflowNotFoundException", "permanent", "define"),
    row(plain_bug, "TypeError", "permanent", "fix the code"),
    row(injected_crash, "etlkit.common.errors.InjectedFault", "transient"),
    row(wrapped_network_error, "airflow.sdk.exceptions.AirflowException", "transient"),
    row(bug_while_handling_network_error, "AttributeError", "permanent", "fix the code"),
]


def provoked(case: Row, services: Services) -> BaseException:
    from airflow.sdk.module_loading import import_string

    raised = import_string(case.raised) if "." in case.raised else getattr(builtins, case.raised)
    with pytest.raises(BaseException) as info:
        case.provoke(services)
    assert isinstance(info.value, raised), f"{case.id}: the service raised {type(info.value)!r}"
    return info.value


@pytest.mark.parametrize("case", TABLE, ids=lambda case: case.id)
def test_retry_policy_decides_on_real_exceptions(case, services):
    exception = provoked(case, services)

    decision = PipelineRetryPolicy("test", retries=3).evaluate(exception, 1, 4)

    expected = RetryAction.RETRY if case.kind == "transient" else RetryAction.FAIL
    assert decision.action == expected, decision.reason
    assert decision.reason.startswith(f"{case.kind}: "), decision.reason
    assert case.remedy in decision.reason
    for secret in (ES_PASSWORD, "k-123"):
        assert secret not in decision.reason


@pytest.mark.parametrize("case", TABLE, ids=lambda case: case.id)
def test_classification_of_real_exceptions(case, services):
    from etlkit.common.retry import classify, explain, is_transient

    exception = provoked(case, services)

    assert classify(exception) == case.kind
    assert is_transient(exception) is (case.kind == "transient")
    if case.kind == "permanent":
        assert explain(exception).reason.endswith("not retried")


def test_permanent_failure_carries_the_remedy_on_the_exception(services):
    exception = provoked(TABLE[0], services)

    PipelineRetryPolicy("test", retries=3).evaluate(exception, 1, 4)

    assert "fix the connection's login/password" in exception.etlkit_retry_decision
    assert any("fix the connection's login/password" in note for note in exception.__notes__)
    assert "etlkit_no_such_role" in exception.etlkit_retry_decision  # names the user, no password


def test_transient_failure_still_stops_when_retries_are_exhausted(services):
    exception = provoked(next(r for r in TABLE if r.provoke is pg_closed_port), services)
    policy = PipelineRetryPolicy("test", retries=2)

    assert policy.evaluate(exception, 2, 3).action == RetryAction.RETRY
    decision = policy.evaluate(exception, 3, 3)
    assert decision.action == RetryAction.FAIL and "retries exhausted" in decision.reason


def test_a_closed_port_is_really_closed(services):
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", services.closed_port), timeout=2).close()
