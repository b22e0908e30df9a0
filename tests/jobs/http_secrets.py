"""A secrets backend that reads connections over HTTP, as Vault-like stores do (a test double).

Configured by ``AIRFLOW__SECRETS__BACKEND=tests.jobs.http_secrets.HttpSecretsBackend`` and
``AIRFLOW__SECRETS__BACKEND_KWARGS={"url": "http://127.0.0.1:<port>"}``. A 404 means "no such
connection"; a refused connection, a timeout or a 5xx raise, like a real client when its store is down.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from airflow.sdk.bases.secrets_backend import BaseSecretsBackend


class HttpSecretsBackend(BaseSecretsBackend):
    def __init__(self, url: str):
        super().__init__()
        self.url = url.rstrip("/")

    def get_conn_value(self, conn_id: str, team_name: str | None = None) -> str | None:
        try:
            with urllib.request.urlopen(f"{self.url}/connections/{conn_id}", timeout=5) as response:
                return response.read().decode()
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise


class SecretsServer:
    """Serves ``connections`` (conn id -> Airflow connection dict); answers 503 while ``down``."""

    def __init__(self, connections: dict[str, dict]):
        self.connections = connections
        self.down = False
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                conn_id = self.path.rsplit("/", 1)[-1]
                server.requests.append(conn_id)
                if server.down:
                    status, body = 503, b"service unavailable"
                elif conn_id in server.connections:
                    status, body = 200, json.dumps(server.connections[conn_id]).encode()
                else:
                    status, body = 404, b"not found"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
