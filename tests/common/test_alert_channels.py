"""Alert channels (issue 18): a failing Ender Turing run alerts a local SMTP server and a local
Slack-compatible webhook, both started here, through Airflow's SMTP and Slack notifiers; a channel
that is down or hangs leaves the task's outcome as it was and is logged."""

from __future__ import annotations

import email
import json
import logging
import socket
import threading
from collections.abc import Iterator
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from etlkit.common import notify
from tests.conftest import task_states
from tests.enderturing import conftest as enderturing_fixtures
from tests.enderturing.conftest import LOGICAL_DATE
from tests.enderturing.test_dag_end_to_end import DAG_ID
from tests.enderturing.test_personal_data import MARKERS, PERSONAL

pytestmark = pytest.mark.enderturing
# The Ender Turing pipeline's fixtures: its failing run is the one alerted here.
et_airflow = enderturing_fixtures.et_airflow
et_database = enderturing_fixtures.et_database
fake_et = enderturing_fixtures.fake_et
warehouse = enderturing_fixtures.warehouse
WEBHOOK_TOKEN = "T000/B000/webhook-secret-token"


class SmtpInbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.original_content, policy=policy.default))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[SmtpInbox, int]]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    inbox = SmtpInbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=free_port(),
        auth_require_tls=False,
        authenticator=lambda server, session, envelope, mechanism, auth_data: AuthResult(success=True),
    )
    controller.start()
    yield inbox, controller.port
    controller.stop()


@pytest.fixture
def webhook() -> Iterator[tuple[list[dict], int]]:
    received: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "body": json.loads(body)})
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield received, server.server_address[1]
    server.shutdown()
    server.server_close()


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def configure(airflow_conn, airflow_var, smtp_port: int, webhook_port: int, **pipeline) -> None:
    airflow_conn(
        "alert_smtp",
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": smtp_port,
            "login": "etl-alerts",
            "password": "smtp-secret-password",
            "extra": {
                "from_email": "etl@example.org",
                "disable_ssl": True,
                "disable_tls": True,
                "retry_limit": 0,
                "timeout": 5,
            },
        },
    )
    airflow_conn(
        "alert_webhook",
        {"conn_type": "slackwebhook", "host": f"http://127.0.0.1:{webhook_port}", "password": WEBHOOK_TOKEN},
    )
    airflow_var(
        notify.ALERTING_VARIABLE,
        {
            "pipelines": {
                DAG_ID: {
                    "channels": ["email", "slack"],
                    "email": {"conn_id": "alert_smtp", "to": ["data-team@example.org"]},
                    "slack": {"webhook_conn_id": "alert_webhook"},
                    **pipeline,
                }
            },
            "default": {"channels": []},
        },
    )


def fail_a_session_with_personal_data(fake) -> str:
    """The failure of tests/enderturing/test_personal_data.py: a malformed session full of personal data."""
    victim = next(s for s in fake.dataset.sessions if s["start_dt"].startswith("2024-06-26"))
    victim["caller_id"] = MARKERS[1]
    victim["tags"] = [{"match": [{"matched_corpus_text": PERSONAL, "transcript_id": 1}], "words": PERSONAL}]
    return victim["id"]


def assert_no_secret_or_personal_data(text: str, fake) -> None:
    for forbidden in (*MARKERS, fake.password, "smtp-secret-password", WEBHOOK_TOKEN):
        assert forbidden not in text


def test_a_failing_run_alerts_by_email_and_webhook(
    run_dag,
    et_airflow,
    airflow_conn,
    airflow_var,
    smtp_server,
    webhook,
    caplog,
):
    fake = et_airflow
    (inbox, smtp_port), (posts, webhook_port) = smtp_server, webhook
    configure(airflow_conn, airflow_var, smtp_port, webhook_port)
    session_id = fail_a_session_with_personal_data(fake)
    caplog.set_level(logging.INFO, logger="etlkit.alerts")

    dr = run_dag(DAG_ID, conf={"resync_lookback_days": 1}, logical_date=LOGICAL_DATE)

    assert dr.state == "failed" and task_states(dr)["sync_sessions"] == "failed"
    [post] = posts
    assert post["path"] == "/" + WEBHOOK_TOKEN
    text = post["body"]["text"]
    [message] = inbox.messages
    assert inbox.envelopes == [("etl@example.org", ["data-team@example.org"])]
    assert message["Subject"] == f"[etlkit] {DAG_ID}.sync_sessions failed (try 1)"
    body = message.get_body(("html",)).get_content()
    for received in (text, body):
        assert f"dag: {DAG_ID}" in received and "task: sync_sessions" in received
        assert f"run: {dr.run_id}" in received and "try: 1\n" in received
        assert "pipeline context: day=2024-06-26" in received
        assert "error: BadInputError: " in received and session_id in received
        assert f"/dags/{DAG_ID}/runs/" in received and "/tasks/sync_sessions?try_number=1" in received
        assert_no_secret_or_personal_data(received, fake)
    assert not [r for r in caplog.records if r.getMessage().startswith("ETL_ALERT_CHANNEL")]


def first_try_of_sync_sessions(max_tries: int, state: str):
    """The task instance an alert callback gets for try 1 of sync_sessions."""
    fields = {"dag_id": DAG_ID, "task_id": "sync_sessions", "map_index": -1, "run_id": "r1"}
    return SimpleNamespace(**fields, try_number=1, max_tries=max_tries, hostname="w", state=state)


def test_retries_alert_only_when_the_pipeline_asks(
    run_dag, et_airflow, airflow_conn, airflow_var, smtp_server, webhook
):
    from etlkit.common.alerting import failure_record

    (inbox, smtp_port), (posts, webhook_port) = smtp_server, webhook
    configure(airflow_conn, airflow_var, smtp_port, webhook_port)
    ti = first_try_of_sync_sessions(max_tries=2, state="up_for_retry")
    context = {"ti": ti, "exception": TimeoutError("upstream timed out")}
    assert notify.notify_failure(failure_record(context), context) == {}
    configure(airflow_conn, airflow_var, smtp_port, webhook_port, retries_alert=True)
    assert notify.notify_failure(failure_record(context), context) == {"email": "sent", "slack": "sent"}
    assert "will retry (try 1)" in inbox.messages[0]["Subject"] and "try: 1\n" in posts[0]["body"]["text"]


def test_channels_that_are_down_leave_the_outcome_unchanged_and_are_logged(
    run_dag,
    et_airflow,
    airflow_conn,
    airflow_var,
    caplog,
):
    configure(airflow_conn, airflow_var, free_port(), free_port())  # closed ports
    fail_a_session_with_personal_data(et_airflow)
    caplog.set_level(logging.DEBUG)

    dr = run_dag(DAG_ID, conf={"resync_lookback_days": 1}, logical_date=LOGICAL_DATE)

    assert dr.state == "failed"
    states = task_states(dr)
    assert states["sync_sessions"] == "failed" and states["advance_category_watermark"] == "upstream_failed"
    channel_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ETL_ALERT_CHANNEL")]
    assert any(line.startswith("ETL_ALERT_CHANNEL email failed: ") for line in channel_lines), channel_lines
    assert any(line.startswith("ETL_ALERT_CHANNEL slack failed: ") for line in channel_lines), channel_lines
    assert any(r.getMessage().startswith("ETL_ALERT ") for r in caplog.records)
    assert not [r for r in caplog.records if WEBHOOK_TOKEN in r.getMessage()]


def test_a_channel_that_hangs_is_given_up_after_the_timeout(
    airflow_conn, airflow_var, webhook, monkeypatch, caplog
):
    """An SMTP server that accepts and never greets: the alert returns at the channel timeout."""
    from etlkit.common.alerting import failure_record

    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(5)
    posts, webhook_port = webhook
    try:
        configure(airflow_conn, airflow_var, hanging.getsockname()[1], webhook_port)
        monkeypatch.setattr(notify, "CHANNEL_TIMEOUT_S", 1)
        ti = first_try_of_sync_sessions(max_tries=0, state="failed")
        context = {"ti": ti, "exception": RuntimeError("boom")}
        caplog.set_level(logging.INFO, logger="etlkit.alerts")
        assert notify.notify_failure(failure_record(context), context) == {
            "email": "timed out",
            "slack": "sent",
        }
    finally:
        hanging.close()
    assert len(posts) == 1
    assert any("ETL_ALERT_CHANNEL email timed out" in r.getMessage() for r in caplog.records)
