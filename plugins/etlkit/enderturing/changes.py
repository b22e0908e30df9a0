"""Skip the sessions of a staged batch that are unchanged since their last load, before the transform.

A session's *source digest* covers everything its rows are made of: its staged listing item, the
staged bodies of its per-session calls (scores, summary, comments) and the code that turns them into
rows (``transform.py``, ``tables.py``, ``staging.py``). The warehouse keeps the digest of the last
committed load of each session in ``etl_session_sources``. Inside the load's transaction, after the
advisory lock, the batch's digests are compared with it: a session whose digest is unchanged (and
whose ``sessions`` row is still there) is neither transformed nor sent; its rows are exactly what
that load wrote, ``etl_loaded_at`` included. Every other session goes through the usual transform
and upsert, and its new digest is written in the same transaction.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
from psycopg import Connection, sql

from etlkit.common.sql import load_sql
from etlkit.enderturing import staging

PIPELINE = "enderturing"
CHANGED_DIR = "changed"
DIGEST_SIZE = 16
# The modules whose code decides the rows of a staged session: a change there changes every digest.
_ROW_CODE = ("transform.py", "tables.py", "staging.py")


class _SessionHead(msgspec.Struct):
    id: Any = None


class _DetailHead(msgspec.Struct):
    session_id: Any = None


@cache
def code_version() -> bytes:
    digest = hashlib.blake2b(digest_size=DIGEST_SIZE)
    for name in _ROW_CODE:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.digest()


def _lines(path: Path):
    if not path.exists():
        return
    with path.open("rb") as handle:
        for line in handle:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line


def _normalised(raw_id: Any) -> str | None:
    if not isinstance(raw_id, str):
        return None
    try:
        return str(uuid.UUID(raw_id))
    except ValueError:
        return None


@dataclass
class BatchDigests:
    by_session: dict[str, bytes]  # normalised session id -> source digest
    order: list[str | None]  # normalised id of each staged session line (None: no valid id)


def batch_digests(staged_dir: Path) -> BatchDigests:
    """The source digest of every staged session with a valid id; two passes over the files, memory
    per session (not per row or byte)."""
    decode_detail = msgspec.json.Decoder(_DetailHead).decode
    decode_session = msgspec.json.Decoder(_SessionHead).decode
    details: dict[Any, list[bytes]] = {}
    for line in _lines(staged_dir / staging.DETAILS_FILE):
        session_id = decode_detail(line).session_id
        details.setdefault(session_id, []).append(hashlib.blake2b(line, digest_size=DIGEST_SIZE).digest())
    version = code_version()
    by_session: dict[str, bytes] = {}
    order: list[str | None] = []
    ambiguous: set[str] = set()
    for line in _lines(staged_dir / staging.SESSIONS_FILE):
        raw_id = decode_session(line).id
        session_id = _normalised(raw_id)
        order.append(session_id)
        if session_id is None:
            continue  # the transform fails on it with the proper message
        if session_id in by_session:
            ambiguous.add(session_id)  # two spellings of one UUID: never skipped
        digest = hashlib.blake2b(version, digest_size=DIGEST_SIZE)
        digest.update(line)
        for part in sorted(details.get(raw_id, ())):
            digest.update(part)
        by_session[session_id] = digest.digest()
    for session_id in ambiguous:
        del by_session[session_id]
    return BatchDigests(by_session, order)


def _query(name: str, **parts: sql.Composable) -> sql.Composed:
    return sql.SQL(load_sql(PIPELINE, name).strip()).format(**parts)


@dataclass
class ChangePlan:
    directory: Path  # staged files holding only the sessions to transform and load
    sessions: int  # staged sessions
    unchanged: int  # skipped: digest equal to their last load's


def plan(conn: Connection, schema: str, staged_dir: Path, work_dir: Path) -> ChangePlan:
    """Compare the batch's digests with the warehouse's (the caller holds the transaction and the
    lock) and stage the changed sessions' lines under ``work_dir`` (the staged directory itself when
    nothing is skipped). The batch's digests stay in a temp table for ``record``."""
    digests = batch_digests(staged_dir)
    conn.execute(_query("sources_create.sql"))
    with conn.cursor() as cursor, cursor.copy(_query("sources_copy.sql")) as copy:
        for session_id, digest in digests.by_session.items():
            copy.write(f"{session_id}\t\\\\x{digest.hex()}\n")
    conn.execute("ANALYZE batch_sources")
    unchanged = {
        str(row[0])
        for row in conn.execute(
            _query(
                "sources_unchanged.sql",
                sources=sql.Identifier(schema, "etl_session_sources"),
                sessions=sql.Identifier(schema, "sessions"),
            )
        )
    }
    if not unchanged:
        return ChangePlan(staged_dir, len(digests.order), 0)
    _write_changed(staged_dir, work_dir, digests, unchanged)
    return ChangePlan(work_dir, len(digests.order), len(unchanged))


def _write_changed(staged_dir: Path, work_dir: Path, digests: BatchDigests, unchanged: set[str]) -> None:
    work_dir.mkdir(parents=True, exist_ok=True)
    kept_raw_ids: set[Any] = set()
    decode_session = msgspec.json.Decoder(_SessionHead).decode
    with (work_dir / staging.SESSIONS_FILE).open("wb") as out:
        lines = _lines(staged_dir / staging.SESSIONS_FILE)
        for session_id, line in zip(digests.order, lines, strict=True):
            if session_id not in unchanged:
                out.write(line + b"\n")
                kept_raw_ids.add(decode_session(line).id)
    decode_detail = msgspec.json.Decoder(_DetailHead).decode
    with (work_dir / staging.DETAILS_FILE).open("wb") as out:
        for line in _lines(staged_dir / staging.DETAILS_FILE):
            if decode_detail(line).session_id in kept_raw_ids:
                out.write(line + b"\n")


def record(conn: Connection, schema: str) -> None:
    """Store the digests of the sessions this transaction loaded (called after their rows)."""
    conn.execute(_query("sources_record.sql", sources=sql.Identifier(schema, "etl_session_sources")))
