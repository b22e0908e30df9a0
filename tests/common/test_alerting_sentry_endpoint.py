"""The local Sentry endpoint (dev/sentry_server.py) receives what the real sentry-sdk sends."""

from __future__ import annotations

import httpx
import sentry_sdk

from dev.sentry_server import SentryServer


def test_the_sdk_delivers_an_exception_event_to_the_local_endpoint():
    server = SentryServer().start()
    try:
        sentry_sdk.init(dsn=server.dsn, default_integrations=False)
        try:
            raise RuntimeError("load of report_7.txt failed")
        except RuntimeError as exc:
            sentry_sdk.capture_exception(exc)
        sentry_sdk.flush(timeout=10)
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init(dsn=None)
        server.stop()
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
