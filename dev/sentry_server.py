"""A local Sentry ingestion endpoint: accepts what sentry-sdk sends and keeps it for inspection.

``POST /api/<project>/envelope/`` takes an envelope (newline-separated JSON: the envelope header,
then per item an item header and its payload; gzip, deflate or brotli encoded, as the SDK sends
it); ``POST /api/<project>/store/`` takes a bare event, as older SDKs send it. Each request must
carry the DSN's public key (``X-Sentry-Auth: Sentry sentry_key=...`` or ``?sentry_key=``), else
401. Requests are kept raw (``raw_bodies``) and parsed (``envelopes``); ``events()`` gives the
event payloads. ``python -m dev.sentry_server`` serves one and prints its DSN.
"""

from __future__ import annotations

import gzip
import json
import re
import secrets
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_PATH = re.compile(r"^/api/(?P<project>\d+)/(?P<kind>envelope|store)/?$")
_AUTH_KEY = re.compile(r"sentry_key=([^,\s]+)")


@dataclass
class Envelope:
    project: str
    header: dict[str, Any]
    items: list[tuple[dict[str, Any], Any]]  # (item header, payload: parsed JSON or raw bytes)

    def events(self) -> list[dict[str, Any]]:
        return [payload for header, payload in self.items if header.get("type") in ("event", "transaction")]


def decode_body(body: bytes, encoding: str | None) -> bytes:
    encoding = (encoding or "").strip().lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli  # the SDK uses brotli only when the module is installed

        return brotli.decompress(body)
    return body


def parse_envelope(project: str, data: bytes) -> Envelope:
    """The envelope format: header line, then (item header line, payload) pairs; a payload is
    ``length`` bytes when the item header says so, else the next line."""
    header_line, _, rest = data.partition(b"\n")
    items: list[tuple[dict[str, Any], Any]] = []
    while rest.strip():
        item_line, _, rest = rest.partition(b"\n")
        if not item_line.strip():
            continue
        item_header = json.loads(item_line)
        length = item_header.get("length")
        if length is not None:
            payload, rest = rest[:length], rest[length + 1 :]
        else:
            payload, _, rest = rest.partition(b"\n")
        try:
            parsed: Any = json.loads(payload)
        except ValueError:
            parsed = payload
        items.append((item_header, parsed))
    return Envelope(project, json.loads(header_line) if header_line.strip() else {}, items)


@dataclass
class SentryServer:
    """Threaded HTTP server on a loopback port; ``dsn`` is what Airflow's ``[sentry] sentry_dsn`` takes."""

    project: str = "42"
    public_key: str = field(default_factory=lambda: secrets.token_hex(16))
    envelopes: list[Envelope] = field(default_factory=list)
    raw_bodies: list[bytes] = field(default_factory=list)
    rejected: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "not started"
        return self._httpd.server_address[1]

    @property
    def dsn(self) -> str:
        return f"http://{self.public_key}@127.0.0.1:{self.port}/{self.project}"

    def start(self) -> SentryServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                status = server.receive(
                    self.path, self.headers, self.rfile.read(int(self.headers["Content-Length"] or 0))
                )
                body = json.dumps(
                    {"id": secrets.token_hex(16)} if status == 200 else {"detail": "refused"}
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="sentry-server", daemon=True)
        self._thread.start()
        return self

    def receive(self, path: str, headers: Any, body: bytes) -> int:
        url = urlsplit(path)
        match = _PATH.match(url.path)
        if not match or match["project"] != self.project:
            return 404
        keys = _AUTH_KEY.findall(headers.get("X-Sentry-Auth", "")) + parse_qs(url.query).get("sentry_key", [])
        if self.public_key not in keys:
            with self._lock:
                self.rejected += 1
            return 401
        data = decode_body(body, headers.get("Content-Encoding"))
        if match["kind"] == "store":
            envelope = Envelope(match["project"], {}, [({"type": "event"}, json.loads(data))])
        else:
            envelope = parse_envelope(match["project"], data)
        with self._lock:
            self.raw_bodies.append(data)
            self.envelopes.append(envelope)
        return 200

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [event for envelope in self.envelopes for event in envelope.events()]

    def raw_text(self) -> str:
        """Everything received, decoded, as one text (to search for what must never be sent)."""
        with self._lock:
            return "\n".join(body.decode("utf-8", errors="replace") for body in self.raw_bodies)

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)


def main() -> None:
    server = SentryServer().start()
    print(f"Sentry endpoint ready; DSN: {server.dsn}", flush=True)
    try:
        while True:
            time.sleep(5)
            print(f"{len(server.events())} events received", flush=True)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
