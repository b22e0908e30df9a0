"""The local Sentry endpoint (dev/sentry_server.py) receives what the real sentry-sdk sends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import sentry_sdk

from dev.sentry_server import SentryServer


@contextmanager
def sdk_reporting_to(server: SentryServer) -> Iterator[None]:
    """The real SDK sends to ``server`` inside the block; flushed, closed and stopped after it."""
    try:
        sentry_sdk.init(dsn=server.dsn, default_integrations=False)
        yield
        sentry_sdk.flush(timeout=10)
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init(dsn=None)
        server.stop()


def test_the_sdk_delivers_an_exception_event_to_the_local_endpoint():
    server = SentryServer().start()
    with sdk_reporting_to(server):
        try:
            raise RuntimeError("load of report_7.txt failed")
        except RuntimeError as exc:
            sentry_sdk.capture_exception(exc)
    [event] = server.events()
    [exception] = event["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("RuntimeError", "load of report_7.txt failed")
    assert "report_7.txt" in server.raw_text()


def test_a_request_without_the_dsn_key_is_refused():
    server = SentryServer().start()
    try:
        response = httpx.post(
            f"http://127.0.0.1:{server.port}/api/{server.project}/envelope/", content=b"{}\n"
        )
        assert response.status_code == 401
        assert server.events() == [] and server.rejected == 1
    finally:
        server.stop()


def test_the_retry_policy_names_the_run_and_the_worker_in_the_error_report():
    """Airflow's integration tags dag, task and try; the policy, evaluated inside the failed task's
    Sentry scope, adds the run and the worker."""
    from types import SimpleNamespace

    from etlkit.common.errors import TransientError
    from etlkit.common.retry_policy import PipelineRetryPolicy

    server = SentryServer().start()
    ti = SimpleNamespace(run_id="manual__2026-12-06T10:00:00+00:00", hostname="worker2")
    with sdk_reporting_to(server), sentry_sdk.new_scope():
        error = TransientError("503 from the API")
        PipelineRetryPolicy("visits").evaluate(error, 1, 3, context={"ti": ti})
        sentry_sdk.capture_exception(error)
    [event] = server.events()
    assert (event["tags"]["run_id"], event["tags"]["worker"]) == (ti.run_id, "worker2")
