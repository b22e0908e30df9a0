"""A local Ender Turing API (spec §1.8) and a generator of realistic data, for tests, demo and bench.

``FakeEnderTuring`` holds the data and the switches; ``start_server(fake)`` serves it over HTTP on a
free loopback port in a background thread. Faults are scripted per path regex: the next N matching
responses get a status (with headers/body), a dropped connection, a delay or a non-JSON body.

Two switches, off by default, make it behave like the vendor under load: ``latency_ms`` (every API
call takes that long, concurrent calls overlap: one thread per connection) and ``set_rate_limit``
(at most N accepted calls in any sliding window; beyond it 429 with ``Retry-After``). ``stats``
records the most calls in flight at once and the 429s the limit answered.
"""

from __future__ import annotations

import json
import math
import random
import re
import secrets
import ssl
import subprocess
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

API = "/api/v1"
DICTIONARY_PATHS = {
    "/agents": "agents",
    "/categories": "categories",
    "/agent-groups": "groups",
    "/labels": "labels",
    "/scorecards": "scorecards",
    "/tags": "tags",
    "/users": "users",
}
DETAIL_PATH = re.compile(r"^/sessions/([^/]+)/(scores|summary|comments)$")


@dataclass
class Fault:
    path_regex: str
    remaining: int
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    action: str = "status"  # status | drop | truncate (the body cut short) | delay | not_json
    delay_s: float = 0.0


@dataclass
class ServerStats:
    """What the server saw since the last ``reset_stats``: API calls in flight at once (the most and
    now), calls accepted, and 429s answered by the rate limit (scripted faults not counted)."""

    in_flight: int = 0
    max_in_flight: int = 0
    accepted: int = 0
    rate_limited: int = 0


class SlidingWindowLimit:
    """At most ``calls`` accepted calls in any ``window_s`` seconds; a refused call is told, in whole
    seconds (HTTP's Retry-After), when the oldest accepted call leaves the window."""

    def __init__(self, calls: int, window_s: float = 1.0):
        if calls < 1 or window_s <= 0:
            raise ValueError("a rate limit needs calls >= 1 and window_s > 0")
        self.calls = calls
        self.window_s = window_s
        self._accepted: deque[float] = deque()

    def admit(self, now: float) -> int | None:
        """None when the call is admitted (and counted), else the Retry-After seconds. Not locked:
        the caller holds the server's lock."""
        while self._accepted and self._accepted[0] <= now - self.window_s:
            self._accepted.popleft()
        if len(self._accepted) < self.calls:
            self._accepted.append(now)
            return None
        return max(1, math.ceil(self._accepted[0] + self.window_s - now))


@dataclass
class Dataset:
    dictionaries: dict[str, list[dict]]
    sessions: list[dict]
    scores: dict[str, list[dict]]
    summaries: dict[str, list[dict] | None]
    comments: dict[str, list[dict]]


class FakeEnderTuring:
    def __init__(self, dataset: Dataset, username: str = "etl@example.com", password: str = "s3cret/pass"):
        self.dataset = dataset
        self.username = username
        self.password = password
        self.expires_in = 3600
        self.max_page_size = 1000
        self.overload_threshold: int | None = None
        self.reject_all_tokens = False
        self.revoke_tokens_at_request: int | None = None  # simulate tokens expiring mid-run
        self.faults: list[Fault] = []
        self.journal: list[dict] = []
        self.keep_journal = True  # off for long benchmark runs: the journal grows with every call
        self.latency_ms = 0.0  # every API call takes at least this long (other calls proceed meanwhile)
        self.rate_limit: SlidingWindowLimit | None = None
        # Listings memoised per query: only for data that does not change while served (benchmarks).
        self.cache_listings = False
        self.stats = ServerStats()
        self._listings: dict[tuple, list[dict]] = {}
        self._session_index: tuple[int, int, dict[str, dict]] | None = None
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()

    # ---- control ---------------------------------------------------------------------------

    def set_rate_limit(self, calls: int | None, window_s: float = 1.0) -> None:
        """At most ``calls`` API calls per sliding ``window_s``; None switches the limit off."""
        with self._lock:
            self.rate_limit = None if calls is None else SlidingWindowLimit(calls, window_s)

    def reset_stats(self) -> None:
        with self._lock:
            self.stats = ServerStats(in_flight=self.stats.in_flight)

    def call_started(self) -> int | None:
        """Count a call in flight and apply the rate limit: None, or the Retry-After of a 429."""
        with self._lock:
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
            retry_after = None if self.rate_limit is None else self.rate_limit.admit(time.monotonic())
            if retry_after is None:
                self.stats.accepted += 1
            else:
                self.stats.rate_limited += 1
            return retry_after

    def call_finished(self) -> None:
        with self._lock:
            self.stats.in_flight -= 1

    def record(self, entry: dict) -> None:
        with self._lock:
            if self.keep_journal:
                self.journal.append(entry)
            if len(self.journal) == self.revoke_tokens_at_request:
                self._tokens.clear()

    def add_fault(self, path_regex: str, count: int, **kwargs: Any) -> None:
        with self._lock:
            self.faults.append(Fault(path_regex, count, **kwargs))

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def reset_journal(self) -> None:
        with self._lock:
            self.journal.clear()

    def requests_to(self, path_regex: str) -> list[dict]:
        return [entry for entry in self.journal if re.search(path_regex, entry["path"])]

    # ---- request handling ------------------------------------------------------------------

    def take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.remaining > 0 and re.search(fault.path_regex, path):
                    fault.remaining -= 1
                    return fault
        return None

    def login(self, form: dict[str, list[str]]) -> tuple[int, Any]:
        if form.get("username") != [self.username] or form.get("password") != [self.password]:
            return 400, {"detail": "Incorrect email or password"}
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.expires_in
        return 200, {"token_type": "bearer", "access_token": token, "expires_in": self.expires_in}

    def authorised(self, header: str | None) -> bool:
        scheme, _, token = (header or "").partition(" ")
        with self._lock:
            expiry = self._tokens.get(token)
        return (
            scheme.lower() == "bearer"
            and expiry is not None
            and time.monotonic() < expiry
            and not self.reject_all_tokens
        )

    def get(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        if path in DICTIONARY_PATHS:
            items = self.dataset.dictionaries[DICTIONARY_PATHS[path]]
            limit = query.get("limit")
            return 200, items[: int(limit[0])] if limit else items
        if path == "/sessions":
            return self.list_sessions(query)
        match = DETAIL_PATH.match(path)
        if match:
            session_id, endpoint = match.groups()
            if not self.has_session(session_id):
                return 404, {"detail": "Session not found"}
            store = {
                "scores": self.dataset.scores,
                "summary": self.dataset.summaries,
                "comments": self.dataset.comments,
            }
            return 200, store[endpoint].get(session_id, None if endpoint == "summary" else [])
        return 404, {"detail": "Not Found"}

    def has_session(self, session_id: str) -> bool:
        """Whether a session has this id: an index rebuilt when the session list is replaced or
        changes length, checked against the session itself, with a scan when it does not know."""
        sessions = self.dataset.sessions
        with self._lock:
            index = self._session_index
            if index is None or index[:2] != (id(sessions), len(sessions)):
                index = (id(sessions), len(sessions), {s.get("id"): s for s in sessions})
                self._session_index = index
        known = index[2].get(session_id)
        if known is not None and known.get("id") == session_id:
            return True
        return any(s.get("id") == session_id for s in sessions)

    def list_sessions(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        try:
            skip = int(query.get("skip", ["0"])[0])
            limit = min(int(query.get("limit", ["100"])[0]), self.max_page_size)
            filters = query.get("filters", [""])[0]
            predicates = parse_filters(filters)
        except ValueError as exc:
            return 422, {"detail": str(exc)}
        if self.overload_threshold is not None and skip >= self.overload_threshold:
            return 500, {"detail": "overloaded"}
        key = (filters, id(self.dataset.sessions), len(self.dataset.sessions))
        matches = self._listings.get(key) if self.cache_listings else None
        if matches is None:
            matches = [s for s in self.dataset.sessions if all(p(s) for p in predicates)]
            matches.sort(key=lambda s: (s.get("start_dt") or "", s.get("id") or ""))
            if self.cache_listings:
                self._listings = {key: matches}  # paging walks one listing at a time
        return 200, {"total": len(matches), "items": matches[skip : skip + limit]}


def parse_filters(text: str) -> list:
    """The §1.5 mini-language (already decoded once) → predicates over session dicts."""
    predicates = []
    for part in text.split("\u00b1") if text else []:
        name, _, rest = part.partition(",")
        if name == "date_range":
            dates, _, times = rest.partition("||")
            first, last = (date.fromisoformat(d) for d in dates.split(","))
            start_minute, end_minute = 0, 24 * 60 - 1
            if times:
                start_minute, end_minute = (
                    int(h) * 60 + int(m) for h, m in (t.split(":") for t in times.split(","))
                )
            predicates.append(_date_range(first, last, start_minute, end_minute))
        elif name == "is_scored" and rest == "manual":
            predicates.append(lambda s: ((s.get("score_details") or {}).get("manual_score")) is not None)
        elif name == "categories" and rest.endswith("|or") and rest != "|or":
            ids = {int(i) for i in rest[: -len("|or")].split(",")}
            predicates.append(lambda s, ids=ids: any(c.get("id") in ids for c in s.get("categories") or []))
        elif name == "reviewers" and rest == "true":
            predicates.append(lambda s: bool(s.get("reviewers")))
        else:
            raise ValueError(f"unknown or malformed filter {part!r}")
    return predicates


def _date_range(first: date, last: date, start_minute: int, end_minute: int):
    def matches(session: dict) -> bool:
        moment = datetime.fromisoformat(session["start_dt"])
        minute = moment.hour * 60 + moment.minute
        return first <= moment.date() <= last and start_minute <= minute <= end_minute

    return matches


class _Handler(BaseHTTPRequestHandler):
    fake: FakeEnderTuring
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm the body waits for the client's
    # delayed ACK of the headers, 40 ms per call on Linux, which would dwarf the latency switch.
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        pass

    def _respond(
        self, status: int, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None
    ):
        payload = raw if raw is not None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8" if raw is None else "text/html")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path[len(API) :] if parts.path.startswith(API) else parts.path
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
        entry = {
            "method": method,
            "path": path,
            "query": parts.query,
            "headers": dict(self.headers),
            "time": time.monotonic(),
        }
        retry_after = self.fake.call_started()
        try:
            self.fake.record(entry)
            if retry_after is not None:
                entry["status"] = 429
                return self._respond(429, {"detail": "Too many requests"}, {"Retry-After": str(retry_after)})
            if self.fake.latency_ms:
                time.sleep(self.fake.latency_ms / 1000)
            self._serve(method, parts, path, body, entry)
        finally:
            entry["answered"] = time.monotonic()
            self.fake.call_finished()

    def _serve(self, method: str, parts: Any, path: str, body: bytes, entry: dict) -> None:
        fault = self.fake.take_fault(path)
        if fault is not None:
            entry["fault"] = fault.action
            if fault.action == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if fault.action == "truncate":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "4096")
                self.end_headers()
                self.wfile.write(b'{"items": [')
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if fault.action == "delay":
                time.sleep(fault.delay_s)
            elif fault.action == "not_json":
                entry["status"] = 200
                return self._respond(200, None, raw=b"<html>maintenance</html>")
            else:
                entry["status"] = fault.status
                return self._respond(fault.status, fault.body or {"detail": "injected"}, fault.headers)
        if method == "POST" and path == "/login/access-token":
            status, payload = self.fake.login(parse_qs(body.decode()))
        elif method != "GET" or not parts.path.startswith(API):
            status, payload = 404, {"detail": "Not Found"}
        elif not self.fake.authorised(self.headers.get("Authorization")):
            status, payload = 401, {"detail": "Could not validate credentials"}
        else:
            status, payload = self.fake.get(path, parse_qs(parts.query))
        entry["status"] = status
        self._respond(status, payload)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


class _Server(ThreadingHTTPServer):
    # A listen backlog of 5 (the default) drops connections when many workers open theirs at once;
    # the client's SYN is then retried after a second, which looks like server latency.
    request_queue_size = 128


@dataclass
class RunningServer:
    httpd: ThreadingHTTPServer
    thread: threading.Thread
    certificate: Path | None = None  # PEM of the self-signed certificate when serving HTTPS

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{'https' if self.certificate else 'http'}://{host}:{port}"

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1 (openssl CLI); returns (certificate, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    certificate, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(certificate)],
        check=True,
        capture_output=True,
    )
    return certificate, key


def start_server(
    fake: FakeEnderTuring, tls_dir: Path | None = None, host: str = "127.0.0.1", port: int = 0
) -> RunningServer:
    """Serve ``fake`` (by default on a free loopback port); with ``tls_dir``, over HTTPS with a
    self-signed certificate."""
    handler = type("Handler", (_Handler,), {"fake": fake})
    httpd = _Server((host, port), handler)
    httpd.daemon_threads = True
    certificate = None
    if tls_dir is not None:
        certificate, key = self_signed_certificate(tls_dir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, name="fake-enderturing", daemon=True)
    thread.start()
    return RunningServer(httpd, thread, certificate)


# ---- data generator ---------------------------------------------------------------------------

WORDS = [
    "refund",
    "delivery",
    "invoice",
    "cancel",
    "upgrade",
    "password",
    "broken",
    "late",
    "thanks",
    "manager",
    "discount",
    "contract",
]
CRM_STATUSES = ["won", "lost", "callback", "no_answer", "escalated"]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def generate_dictionaries(rng: random.Random) -> dict[str, list[dict]]:
    labels = [{"id": i, "text": f"label {i}", "color": "#aa00ff"} for i in range(1, 9)]
    scorecards, point_id = [], 1
    for card_id in (1, 2):
        categories = []
        for cat_no in range(2):
            category_id = card_id * 10 + cat_no
            points = []
            for sort_order in range(3):
                points.append(
                    {
                        "id": point_id,
                        "name": f"point {point_id}",
                        "description": rng.choice(
                            ["Greets the client", "Verifies identity", "Closes politely"]
                        ),
                        "sort_order": sort_order,
                        "critical": sort_order == 0,
                        "max_score": 5,
                        "allow_partial_score": True,
                        "score_values": [1],
                        "user_data": None,
                    }
                )
                point_id += 1
            categories.append(
                {
                    "id": category_id,
                    "name": f"section {category_id}",
                    "scorecard_id": card_id,
                    "sort_order": cat_no,
                }
                | {"points": points}
            )
        scorecards.append(
            {
                "id": card_id,
                "name": f"QA card {card_id}",
                "type": "manual",
                "na_behavior": "skip",
                "count_critical_scores": True,
                "is_automated": card_id == 2,
                "is_protected": False,
                "is_default": card_id == 1,
                "is_archived": False,
                "team_ids": [1],
                "categories": categories,
            }
        )
    groups = [
        {
            "id": g,
            "name": f"team {g}",
            "scorecard_id": 1 + g % 2,
            "is_default": g == 1,
            "additional_scorecards": [],
        }
        for g in range(1, 4)
    ]
    agents = [
        {
            "id": a,
            "name": f"Agent {a}",
            "phone_number": f"+3725{rng.randrange(10**6):06d}",
            "is_active": a % 7 != 0,
            "deactivated_at": None if a % 7 else "2024-05-01T09:00:00",
            "groups": [
                {"group_id": 1 + a % 3, "start_dt": "0001-01-01T00:00:00" if a % 2 else "2024-01-15T08:00:00"}
            ],
            "phone_number_aliases": [str(6800 + a)],
            "user": None,
            "reactions": [],
        }
        for a in range(1, 21)
    ]
    users = [
        {
            "id": u,
            "email": f"user{u}@example.com",
            "is_active": True,
            "is_superuser": u == 1,
            "full_name": f"User {u}",
            "agent_id": u if u <= 20 else None,
            "agent_group_id": 1 + u % 3,
            "language": rng.choice(["en", "et", "ru"]),
            "uuid": _uuid(rng),
            "invite_expires": None,
            "role_ids": [2],
            "permissions": [],
        }
        for u in range(1, 26)
    ]
    categories = [
        {
            "id": c,
            "name": f"category {c}",
            "filter_data": f"&&[tags,||and|{2700 + c}|or]",
            "position": c,
            "created_at": "2024-01-01T00:00:00",
            "updated_at": None if c == 1 else f"2024-06-{10 + c:02d}T10:00:00.{c * 111111 % 1000000:06d}",
            "labels": [{"id": 1 + c % 8}],
        }
        for c in range(1, 9)
    ]
    tags = [
        {
            "id": t,
            "name": f"tag {WORDS[t % len(WORDS)]}",
            "type": rng.choice(["phrase", "keyword"]),
            "team_id": 1 + t % 3,
            "is_archived": t == 12,
            "archived_by_id": 1 if t == 12 else None,
            "archived_at": "2024-06-01T12:00:00" if t == 12 else None,
            "labels": [{"id": 1 + t % 8}] if t % 2 else [],
            "words": [WORDS[t % len(WORDS)]],
            "phrases": [],
            "color": "#00ff00",
        }
        for t in range(1, 13)
    ]
    return {
        "agents": agents,
        "categories": categories,
        "groups": groups,
        "labels": labels,
        "scorecards": scorecards,
        "tags": tags,
        "users": users,
    }


def generate_session(
    rng: random.Random, day: date, dictionaries: dict[str, list[dict]] | None = None
) -> dict:
    moment = datetime.combine(day, datetime.min.time()) + timedelta(seconds=rng.uniform(0, 86399.99))
    start = moment.isoformat(timespec="microseconds" if rng.random() < 0.5 else "seconds")
    reviewers = [
        {
            "id": rng.randrange(1, 26),
            "last_reviewed_at": (moment + timedelta(days=1, seconds=rng.random() * 1000)).isoformat(),
            "name": "Reviewer",
        }
        for _ in range(rng.choice([0, 0, 1, 2]))
    ]
    tags = []
    for tag_id in rng.sample(range(1, 13), rng.randrange(0, 4)):
        transcript = rng.randrange(10**9, 10**10)
        tags.append(
            {
                "id": tag_id,
                "match": [
                    {
                        "score": round(rng.random(), 3),
                        "matched_corpus_text": f"... {rng.choice(WORDS)} please ...",
                        "is_agent": rng.random() < 0.5,
                        "transcript_id": transcript if m < 2 else transcript + m,
                        "matched_query_text": rng.choice(WORDS),
                        "meta": {"start": round(rng.random() * 100, 2)},
                    }
                    for m in range(rng.randrange(0, 4))
                ],
            }
        )
    crm: list[Any] = []
    for status in rng.sample(CRM_STATUSES, rng.randrange(0, 3)):
        crm.append(status if rng.random() < 0.5 else {"crm_status": status, "source": "crm"})
    duration = round(rng.uniform(20, 900), 2)
    words_agent, words_client = rng.randrange(10, 900), rng.randrange(10, 900)
    return {
        "id": _uuid(rng),
        "type": rng.choice(["call", "call", "chat", "email", "ticket"]),
        "caller_id": f"+3725{rng.randrange(10**6):06d}",
        "source": rng.choice(["genesys", "twilio", "zendesk"]),
        "language_code": rng.choice(["en-US", "et-EE", "ru-RU"]),
        "asr_size": rng.choice(["small", "large"]),
        "filename": f"rec_{rng.randrange(10**8)}.wav",
        "destination_id": str(rng.randrange(100, 999)),
        "direction": rng.choice(["in", "out"]),
        "queue_name": rng.choice(["sales", "support", "billing"]),
        "campaign_name": rng.choice([None, "summer", "winback"]),
        "term_reason": rng.choice(["agent", "client", None]),
        "start_dt": start,
        "end_dt": (moment + timedelta(seconds=duration)).isoformat(),
        "agent_id": rng.randrange(1, 21),
        "group_id": rng.randrange(1, 4),
        "agent_channel": rng.choice([0, 1]),
        "comments_count": 0,
        "default_scorecard_id": rng.choice([1, 2]),
        "waiting_time": rng.randrange(0, 300),
        "fcr": rng.choice([0, 1, None]),
        "csi": rng.choice([None, rng.randrange(1, 6)]),
        "nps": rng.choice([None, rng.randrange(0, 11)]),
        "list_id": rng.choice([None, rng.randrange(1, 50)]),
        "words_count_agent": words_agent,
        "words_count_client": words_client,
        "words_count_both": words_agent + words_client,
        "duration": duration,
        "silence": round(duration * 0.1, 2),
        "silence_percent": 10.0,
        "average_score": round(rng.uniform(0, 1), 3),
        "is_processed": True,
        "overlaps_data": {"client": round(rng.random() * 5, 2), "agent": round(rng.random() * 5, 2)},
        "duration_details": {"0": round(duration / 2, 2), "1": round(duration / 2, 2)},
        "score_details": {
            "automated_score": round(rng.random(), 2),
            "manual_score": round(rng.random(), 2) if reviewers else None,
        },
        "additional_info": {"words_count": [words_agent, words_client]},
        "caller_prev_session_id": rng.choice([None, _uuid(rng)]),
        "tags": tags,
        "categories": [
            {"id": c, "is_verified": rng.random() < 0.3} for c in rng.sample(range(1, 9), rng.randrange(0, 3))
        ],
        "reviewers": reviewers,
        "crm_statuses": crm,
        "created_at": start,
        "agent_name": "ignored",
        "transcripts": None,
    }


def generate_scores(rng: random.Random, session: dict) -> list[dict]:
    sheets = []
    for reviewer in session["reviewers"]:
        card = rng.choice([1, 2])
        first_point = (card - 1) * 6 + 1
        sheets.append(
            {
                "id": rng.randrange(10**6),
                "session_id": session["id"],
                "scorecard_id": card,
                "reviewer_id": reviewer["id"] if rng.random() < 0.8 else None,
                "point_scores": [
                    {
                        "id": rng.randrange(10**6),
                        "scorecard_point_id": p,
                        "score": rng.choice([0, 2.5, 5]),
                        "comment": None,
                    }
                    for p in range(first_point, first_point + rng.randrange(1, 5))
                ],
                "meta": {"dispute_pending": False, "is_agreed": rng.random() < 0.5},
            }
        )
    return sheets


def generate_summary(rng: random.Random, session: dict) -> list[dict] | None:
    if rng.random() < 0.1:
        return None
    return [
        {
            "id": rng.randrange(10**6),
            "session_id": session["id"],
            "text": f"Client asked about {rng.choice(WORDS)}; agent resolved it.\tFollow-up: {rng.choice(WORDS)}.",
            "created_at": session["start_dt"],
            "updated_at": session["start_dt"],
        }
    ]


def generate_dataset(days: list[date], sessions_per_day: int, seed: int = 42) -> Dataset:
    rng = random.Random(seed)
    dictionaries = generate_dictionaries(rng)
    sessions = [generate_session(rng, day) for day in days for _ in range(sessions_per_day)]
    scores = {s["id"]: generate_scores(rng, s) for s in sessions if s["reviewers"]}
    summaries = {s["id"]: generate_summary(rng, s) for s in sessions}
    return Dataset(dictionaries, sessions, scores, summaries, {})


def main() -> None:
    """``python -m dev.enderturing_server [--host H] [--port P]``: serve yesterday's data until stopped."""
    import argparse

    parser = argparse.ArgumentParser(description="fake Ender Turing API with generated data")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 inside a container")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port")
    parser.add_argument("--sessions-per-day", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="every API call takes this long")
    parser.add_argument("--rate-limit", type=int, default=None, help="API calls per second, then 429")
    args = parser.parse_args()
    dataset = generate_dataset([date.today() - timedelta(days=1)], args.sessions_per_day)
    fake = FakeEnderTuring(dataset)
    fake.latency_ms = args.latency_ms
    fake.set_rate_limit(args.rate_limit)
    server = start_server(fake, host=args.host, port=args.port)
    print(f"fake Ender Turing on {server.url} (user etl@example.com / s3cret/pass)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
