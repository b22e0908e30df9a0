"""A local Signum backend: the ``/sync`` contract of the Sierra sync spec (§4), failures included.

* ``x-api-key`` auth: missing header → 422 (framework-style detail), unknown key or a
  ``signum-printer`` client → 403, checked before the form is validated.
* State machine: ``SYNC_FULL`` (``last_synced_id`` computed from the stored rows) → a file shorter
  than ``FULL_SYNC_BATCH_SIZE`` switches to ``SYNC_CHANGES``; ``sync_changes_since`` keeps the first
  full batch's timestamp, then each changes POST's timestamp.
* POST parsing like production: gzip (bad magic → 400), pandas ``read_csv`` with the spec's dtypes
  (``itype_code_num`` non-nullable uint8), upsert on ``item_record_id`` in one all-or-nothing step,
  a repeated id, a dtype or any other error → 500 with nothing stored.
* Test controls under ``/_test`` (and the same methods on ``BackendState`` in-process): batch size,
  client keys, state, stored rows, fault injection (status codes with ``Retry-After``, holding a
  request past the client timeout unprocessed, committing then losing the response), request log.

``python -m dev.signum_server --port 8765 --key KEY`` serves it for the demo.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from dev.sshd import free_port, wait_for_port
from etlkit.sierra.protocol import COLUMNS, SYNC_CHANGES, SYNC_FULL

DTYPES = {
    **{name: "string" for name in COLUMNS},
    "item_record_id": "Int64",
    "bib_record_id": "Int64",
    "itype_code_num": "uint8",
}
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Fault:
    """``kind``: ``status`` (answer ``status``), ``hold`` (sleep, then drop the request unprocessed),
    ``lost_response`` (process and commit, then sleep so the client never sees the answer) or
    ``pass`` (serve normally: lets a test fail the second request, not the first)."""

    kind: str
    status: int = 503
    retry_after: int | None = None
    seconds: float = 0.0


@dataclass
class BackendState:
    batch_size: int = 80000
    keys: dict[str, str] = field(default_factory=dict)  # key -> client type (etl / signum-printer)
    sync_mode: str = SYNC_FULL
    sync_changes_since: datetime | None = None
    full_sync_completed_at: datetime | None = None
    last_sync_run_completed_at: datetime | None = None
    initialized_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    items: dict[int, dict[str, Any]] = field(default_factory=dict)
    faults: dict[str, deque[Fault]] = field(default_factory=lambda: {"GET": deque(), "POST": deque()})
    requests: list[dict[str, Any]] = field(default_factory=list)
    sync_body: dict[str, Any] | None = None  # answer GET /sync with this body instead (bad-body tests)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- test controls ---------------------------------------------------------------------
    def inject(self, method: str, fault: Fault, times: int = 1) -> None:
        self.faults[method.upper()].extend([fault] * times)

    def clear_faults(self) -> None:
        for queue in self.faults.values():
            queue.clear()

    def state(self) -> dict[str, Any]:
        return {
            "sync_mode": self.sync_mode,
            "sync_changes_since": self.sync_changes_since,
            "full_sync_completed_at": self.full_sync_completed_at,
            "last_sync_run_completed_at": self.last_sync_run_completed_at,
            "initialized_at": self.initialized_at,
            "last_synced_id": self.last_synced_id(),
            "items": len(self.items),
        }

    def set_state(self, sync_mode: str, sync_changes_since: datetime | None) -> None:
        self.sync_mode = sync_mode
        self.sync_changes_since = sync_changes_since

    def reset(self) -> None:
        self.sync_mode, self.sync_changes_since = SYNC_FULL, None
        self.full_sync_completed_at = self.last_sync_run_completed_at = None
        self.items.clear()
        self.requests.clear()
        self.clear_faults()
        self.sync_body = None

    # -- the contract ----------------------------------------------------------------------
    def last_synced_id(self) -> int:
        return max(self.items, default=0)

    def sync_config(self) -> dict[str, Any]:
        if self.sync_mode == SYNC_FULL:
            return {
                "sync_mode": SYNC_FULL,
                "batch_size": self.batch_size,
                "last_synced_id": self.last_synced_id(),
            }
        if self.sync_mode == SYNC_CHANGES and self.sync_changes_since is not None:
            return {"sync_mode": SYNC_CHANGES, "timestamp": self.sync_changes_since.isoformat()}
        raise ValueError(f"state: {self.sync_mode}, sync_changes_since={self.sync_changes_since}")

    def apply_upload(self, text: str, timestamp: datetime) -> int:
        """Parse, then upsert and transition at once (all or nothing); returns the data row count."""
        frame = pd.read_csv(io.StringIO(text), sep="\t", header=0, dtype=DTYPES)
        missing = set(COLUMNS) - set(frame.columns)
        if missing:
            raise ValueError(f"missing columns {sorted(missing)}")
        if frame["item_record_id"].isna().any() or frame["item_record_id"].duplicated().any():
            raise ValueError("item_record_id NULL or repeated within one file")
        rows = {}
        for record in frame[list(COLUMNS)].astype(object).to_dict("records"):
            row = {k: (None if pd.isna(v) else v) for k, v in record.items()}
            row["item_record_id"] = int(row["item_record_id"])
            row["bib_record_id"] = None if row["bib_record_id"] is None else int(row["bib_record_id"])
            row["itype_code_num"] = int(row["itype_code_num"])
            rows[row["item_record_id"]] = {**row, "updated_at": timestamp, "in_update_queue": False}
        now = datetime.now(UTC)
        self.items.update(rows)
        if self.sync_mode == SYNC_FULL:
            if self.sync_changes_since is None:
                self.sync_changes_since = timestamp
            if len(frame) < self.batch_size:
                self.sync_mode, self.full_sync_completed_at = SYNC_CHANGES, now
        else:
            self.sync_changes_since = timestamp
        self.last_sync_run_completed_at = now
        return len(frame)


def _readable_text(data: bytes) -> str | None:
    """The decompressed upload for the request log, or None when it is not readable gzip."""
    try:
        return gzip.decompress(data).decode("utf-8", "replace")
    except (OSError, EOFError):
        return None


def _missing_key() -> JSONResponse:
    detail = [{"type": "missing", "loc": ["header", "x-api-key"], "msg": "Field required", "input": None}]
    return JSONResponse({"detail": detail}, status_code=422)


def create_app(state: BackendState) -> FastAPI:
    app = FastAPI(title="Signum backend (local)")

    async def take_fault(method: str) -> JSONResponse | Fault | None:
        with state.lock:
            fault = state.faults[method].popleft() if state.faults[method] else None
        if fault is None or fault.kind == "pass":
            return None
        if fault.kind == "lost_response":
            return fault
        if fault.kind == "hold":
            await asyncio.sleep(fault.seconds)
            return JSONResponse({"detail": "request held and discarded"}, status_code=504)
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        return JSONResponse({"detail": f"injected {fault.status}"}, status_code=fault.status, headers=headers)

    def check_key(request: Request) -> JSONResponse | None:
        key = request.headers.get("x-api-key")
        if key is None:
            return _missing_key()
        if state.keys.get(key) != "etl":
            return JSONResponse({"detail": "Invalid x-api-key"}, status_code=403)
        return None

    def log_request(request: Request, **details: Any) -> dict[str, Any]:
        entry = {"method": request.method, "headers": sorted(request.headers.keys()), **details}
        state.requests.append(entry)
        return entry

    @app.get("/sync")
    async def get_sync(request: Request):
        log_request(request)
        fault = await take_fault("GET")
        if isinstance(fault, JSONResponse):
            return fault
        if denied := check_key(request):
            return denied
        if state.sync_body is not None:
            return state.sync_body
        try:
            with state.lock:
                return state.sync_config()
        except ValueError as exc:
            return JSONResponse({"detail": f"Error fetching sync configuration, {exc}"}, status_code=500)

    @app.post("/sync")
    async def post_sync(request: Request):
        entry = log_request(request)
        if denied := check_key(request):
            return denied
        form = await request.form()
        upload, raw_timestamp = form.get("file"), form.get("timestamp")
        entry.update(parts=sorted(form.keys()))
        if upload is None or isinstance(upload, str) or raw_timestamp is None:
            return JSONResponse(
                {"detail": [{"type": "missing", "msg": "file and timestamp are required"}]}, 422
            )
        data = await upload.read()
        entry.update(filename=upload.filename, content_type=upload.content_type, timestamp=str(raw_timestamp))
        entry.update(text=_readable_text(data))
        fault = await take_fault("POST")
        if isinstance(fault, JSONResponse):
            return fault
        try:
            timestamp = datetime.fromisoformat(str(raw_timestamp))
        except ValueError:
            return JSONResponse({"detail": [{"type": "datetime_parsing", "loc": ["body", "timestamp"]}]}, 422)
        if not data.startswith(GZIP_MAGIC):
            return JSONResponse({"detail": "Invalid gzip file"}, status_code=400)
        try:
            text = gzip.decompress(data).decode("utf-8")
            with state.lock:
                upserted = state.apply_upload(text, timestamp)
        except Exception:
            return JSONResponse({"detail": "Internal server error"}, status_code=500)
        entry.update(committed=True)
        if isinstance(fault, Fault):  # committed; the client never sees the answer
            await asyncio.sleep(fault.seconds)
        return {"upserted": upserted}

    @app.get("/_test/state")
    def read_state():
        return state.state()

    @app.get("/_test/items")
    def read_items():
        return list(state.items.values())

    @app.get("/_test/requests")
    def read_requests():
        return state.requests

    @app.post("/_test/faults/{method}")
    def add_fault(method: str, fault: dict[str, Any]):
        times = int(fault.pop("times", 1))
        state.inject(method, Fault(**fault), times)
        return {"queued": len(state.faults[method.upper()])}

    return app


class SignumServer:
    """The app on a loopback port in a background thread; ``state`` is shared with the caller."""

    def __init__(self, state: BackendState | None = None, port: int | None = None):
        self.state = state or BackendState()
        self.port = port or free_port()
        config = uvicorn.Config(create_app(self.state), host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connection(self, api_key: str | None, **extra: Any) -> dict[str, Any]:
        """The Airflow connection (JSON form) for this server; the key goes in the password."""
        conn: dict[str, Any] = {"conn_type": "http", "host": "127.0.0.1", "port": self.port, "schema": "http"}
        if api_key is not None:
            conn["password"] = api_key
        if extra:
            conn["extra"] = extra
        return conn

    def start(self) -> SignumServer:
        self._thread.start()
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="local Signum backend")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 inside a container")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--key", required=True, help="API key of the etl client")
    parser.add_argument("--batch-size", type=int, default=80000)
    args = parser.parse_args(argv)
    state = BackendState(batch_size=args.batch_size, keys={args.key: "etl"})
    uvicorn.run(create_app(state), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
