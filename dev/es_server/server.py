"""The HTTP plumbing: routing, compatibility-header checks, the request log, and the server's life cycle."""

from __future__ import annotations

import argparse
import copy
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from dev.es_server.cluster import Cluster
from dev.es_server.errors import EsError, status_error_type

DESCRIPTION = "A local HTTP server speaking the subset of the Elasticsearch REST API the movies DAG uses."
_COMPAT_RE = re.compile(r"compatible-with=(\d+)")


def _endpoint(method: str, parts: list[str]) -> str:
    """A short name of the route, used by ``fail_next`` and the request log."""
    if not parts:
        return "root"
    if parts[0] == "_aliases":
        return "aliases"
    if parts[0] == "_alias":
        return "alias"
    if parts[0] == "_bulk" or (len(parts) == 2 and parts[1] == "_bulk"):
        return "bulk"
    if len(parts) == 1:
        return {"PUT": "create_index", "DELETE": "delete_index"}.get(method, "index")
    return parts[1].lstrip("_")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cluster: Cluster  # set on the subclass made per server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle + delayed ACK add ~40 ms each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _check_media_types(self) -> None:
        seen = {}
        for header in ("Accept", "Content-Type"):
            value = self.headers.get(header) or ""
            match = _COMPAT_RE.search(value)
            if match:
                seen[header] = int(match.group(1))
        versions = set(seen.values())
        major = self.cluster.major
        if len(versions) > 1 or any(v not in {major - 1, major} for v in versions):
            raise EsError(
                400,
                "media_type_header_exception",
                f"Invalid media-type value on headers {sorted(seen)}: compatible-with={sorted(versions)} "
                f"is not supported by a {major}.x server",
            )

    def _send(self, status: int, body: Any) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _handle(self) -> None:
        if self.cluster.down:
            self.close_connection = True
            return
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.cluster.max_content_length:
            self.rfile.read(length)  # drained, so closing does not reset the connection under the reply
            self.close_connection = True
            self._send(413, None)
            return
        raw = self.rfile.read(length) if length else b""
        endpoint = _endpoint(self.command, parts)
        self.cluster.requests.append(
            {
                "method": self.command,
                "path": url.path,
                "endpoint": endpoint,
                "accept": self.headers.get("Accept"),
                "content_type": self.headers.get("Content-Type"),
                "authorization": self.headers.get("Authorization"),
            }
        )
        try:
            self.cluster.check_authorization(self.headers.get("Authorization"))
            self._check_media_types()
            injected = self.cluster.take_failure(endpoint)
            if injected:
                raise EsError(injected, status_error_type(injected), f"injected failure on {endpoint}")
            status, body = self._route(parts, query, raw)
        except EsError as exc:
            status, body = exc.status, exc.body()
        self._send(status, body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    def _json(self, raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise EsError(400, "parse_exception", f"request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise EsError(400, "parse_exception", "request body must be a JSON object")
        return body

    def _route(self, parts: list[str], query: dict[str, str], raw: bytes) -> tuple[int, Any]:
        cluster, method = self.cluster, self.command
        refresh = query.get("refresh") in {"", "true", "wait_for"}
        if not parts and method in {"GET", "HEAD"}:
            return 200, {
                "name": "etlkit-es-subset",
                "cluster_name": "etlkit",
                "cluster_uuid": "etlkit-es-subset-cluster",
                "version": {"number": cluster.version, "build_flavor": "default", "lucene_version": "9.11.1"},
                "tagline": "You Know, for Search",
            }
        if parts == ["_aliases"] and method == "POST":
            actions = self._json(raw).get("actions")
            if not isinstance(actions, list):
                raise EsError(400, "action_request_validation_exception", "Validation Failed: 1: no actions;")
            return 200, cluster.update_aliases(actions)
        if len(parts) == 2 and parts[0] == "_alias" and method in {"GET", "HEAD"}:
            with cluster.lock:
                found = {
                    index: {"aliases": {name: {}}}
                    for name in parts[1].split(",")
                    for index in sorted(cluster.aliases.get(name, ()))
                }
            if not found:
                return 404, {"error": f"alias [{parts[1]}] missing", "status": 404}
            return 200, found
        if parts == ["_bulk"] and method in {"POST", "PUT"}:
            return 200, cluster.bulk(None, raw, refresh)
        if len(parts) == 1 and method == "PUT":
            return 200, cluster.create_index(parts[0], self._json(raw))
        if not parts or parts[0].startswith("_"):
            raise EsError(400, "illegal_argument_exception", f"unsupported route [{method} {self.path}]")
        target = parts[0]
        if len(parts) == 1:
            return self._index_route(method, target, raw)
        action = parts[1]
        if action == "_bulk" and len(parts) == 2 and method in {"POST", "PUT"}:
            return 200, cluster.bulk(target, raw, refresh)
        if action == "_refresh" and len(parts) == 2 and method in {"POST", "GET"}:
            return 200, cluster.refresh(target)
        if action == "_count" and len(parts) == 2 and method in {"POST", "GET"}:
            return 200, cluster.count(target, self._json(raw))
        if action == "_search" and len(parts) == 2 and method in {"POST", "GET"}:
            body = self._json(raw)
            if "size" in query:
                body["size"] = int(query["size"])
            return 200, cluster.search(target, body)
        if action == "_mget" and len(parts) == 2 and method in {"POST", "GET"}:
            return 200, cluster.mget(target, self._json(raw))
        if action == "_doc" and len(parts) == 3:
            if method in {"GET", "HEAD"}:
                return cluster.get_document(target, parts[2])
            if method in {"PUT", "POST"}:
                return cluster.index_document(target, parts[2], raw, refresh)
        if action in {"_mapping", "_settings", "_alias"} and len(parts) == 2 and method == "GET":
            with cluster.lock:
                names = cluster.resolve(target)
                if action == "_mapping":
                    return 200, {n: {"mappings": copy.deepcopy(cluster.indices[n].mappings)} for n in names}
                if action == "_settings":
                    return 200, {n: {"settings": cluster.settings_of(cluster.indices[n])} for n in names}
                return 200, {n: {"aliases": cluster.aliases_of(n)} for n in names}
        raise EsError(400, "illegal_argument_exception", f"unsupported route [{method} {self.path}]")

    def _index_route(self, method: str, target: str, raw: bytes) -> tuple[int, Any]:
        cluster = self.cluster
        if method == "PUT":
            return 200, cluster.create_index(target, self._json(raw))
        if method == "DELETE":
            return 200, cluster.delete_index(target)
        with cluster.lock:
            names = cluster.resolve(target, allow_missing=method == "HEAD")
            if method == "HEAD":
                return (200 if names else 404), None
            return 200, {
                n: {
                    "aliases": cluster.aliases_of(n),
                    "mappings": copy.deepcopy(cluster.indices[n].mappings),
                    "settings": cluster.settings_of(cluster.indices[n]),
                }
                for n in names
            }


class EsSubsetServer:
    """The server on 127.0.0.1: ``start()``, ``go_down()`` / ``come_up()`` (refused connections), ``stop()``."""

    def __init__(self, major: int = 8, port: int = 0, host: str = "127.0.0.1"):
        self.cluster = Cluster(major)
        self.host = host
        self.port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> EsSubsetServer:
        handler = type("BoundHandler", (Handler,), {"cluster": self.cluster})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="es-subset", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def go_down(self) -> None:
        """Refuse new connections and drop requests on kept-alive ones, until ``come_up``."""
        self.cluster.down = True
        self.stop()

    def come_up(self) -> None:
        self.cluster.down = False
        self.start()


def main() -> None:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--major", type=int, default=8, choices=[8, 9])
    args = parser.parse_args()
    server = EsSubsetServer(args.major, args.port, args.host).start()
    print(f"ES-subset server (emulating {server.cluster.version}) on {server.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()
