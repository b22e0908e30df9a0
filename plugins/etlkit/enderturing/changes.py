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
import re
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
PLAN_DIR = "planned"
NEW_SESSIONS = "new_sessions"  # temp table: the batch's sessions without a sessions row yet
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


def _leading_string(line: bytes, prefix: bytes) -> str | None:
    """The value of the first key when ``line`` starts with ``prefix`` (``{"key":"``) and the value
    has no escapes. The staged lines are ``json.dumps`` of a dict, so a key appears once: the first
    key is the object's. None sends the caller to the full decode."""
    if not line.startswith(prefix):
        return None
    end = line.find(b'"', len(prefix))
    value = line[len(prefix) : end]
    if end < 0 or b"\\" in value:
        return None
    return value.decode("utf-8", "replace")


def _session_id(line: bytes, decode) -> Any:
    fast = _leading_string(line, b'{"id":"')
    return fast if fast is not None else decode(line).id


def _detail_session_id(line: bytes, decode) -> Any:
    fast = _leading_string(line, b'{"session_id":"')
    return fast if fast is not None else decode(line).session_id


def _lines(path: Path):
    if not path.exists():
        return
    with path.open("rb") as handle:
        for line in handle:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _normalised(raw_id: Any) -> str | None:
    """The id as PostgreSQL prints the uuid (the key of ``etl_session_sources``), None if no UUID."""
    if not isinstance(raw_id, str):
        return None
    if _CANONICAL_UUID.fullmatch(raw_id):
        return raw_id  # already canonical: the common case, without parsing
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
        session_id = _detail_session_id(line, decode_detail)
        details.setdefault(session_id, []).append(hashlib.blake2b(line, digest_size=DIGEST_SIZE).digest())
    version = code_version()
    by_session: dict[str, bytes] = {}
    order: list[str | None] = []
    ambiguous: set[str] = set()
    for line in _lines(staged_dir / staging.SESSIONS_FILE):
        raw_id = _session_id(line, decode_session)
        session_id = _normalised(raw_id)
        order.append(session_id)
        if session_id is None:
            continue  # the transform fails on it with the proper message
        if session_id in by_session:
            ambiguous.add(session_id)  # two spellings of one UUID: never skipped
        digest = hashlib.blake2b(version, digest_size=DIGEST_SIZE)
        digest.update(line)
        for part in sorted(details.pop(raw_id, ())):  # popped: memory peaks at one of the two maps
            digest.update(part)
        by_session[session_id] = digest.digest()
    for session_id in ambiguous:
        del by_session[session_id]
    return BatchDigests(by_session, order)


def _query(name: str, **parts: sql.Composable) -> sql.Composed:
    return sql.SQL(load_sql(PIPELINE, name).strip()).format(**parts)


@dataclass
class ChangePlan:
    sessions: int  # staged sessions
    unchanged: int  # skipped: digest equal to their last load's
    new_dir: Path | None  # staged files of the sessions without a sessions row yet, if any
    changed_dir: Path | None  # staged files of the other sessions to load, if any


def plan(conn: Connection, schema: str, staged_dir: Path, work_dir: Path) -> ChangePlan:
    """Compare the batch's digests with the warehouse's (the caller holds the transaction and the
    lock), then split the sessions to load into new ones (no sessions row yet: temp table
    ``NEW_SESSIONS``) and the others, each staged under ``work_dir`` (or the staged directory itself
    when it holds exactly that part). The batch's digests stay in a temp table for ``record``."""
    digests = batch_digests(staged_dir)
    conn.execute(_query("sources_create.sql"))
    with conn.cursor() as cursor, cursor.copy(_query("sources_copy.sql")) as copy:
        for session_id, digest in digests.by_session.items():
            copy.write(f"{session_id}\t\\\\x{digest.hex()}\n")
    conn.execute("ANALYZE batch_sources")
    sessions = sql.Identifier(schema, "sessions")
    sources = sql.Identifier(schema, "etl_session_sources")
    unchanged = {
        str(row[0])
        for row in conn.execute(_query("sources_unchanged.sql", sources=sources, sessions=sessions))
    }
    conn.execute(
        _query("new_sessions_create.sql", new_sessions=sql.Identifier(NEW_SESSIONS), sessions=sessions)
    )
    new_sessions = sql.Identifier(NEW_SESSIONS)
    conn.execute(sql.SQL("ANALYZE {}").format(new_sessions))
    new_count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(new_sessions)).fetchone()[0]
    total = len(digests.order)
    if new_count == total:
        return ChangePlan(total, 0, staged_dir, None)
    if not new_count and not unchanged:
        return ChangePlan(total, 0, None, staged_dir)
    new = {str(row[0]) for row in conn.execute(sql.SQL("SELECT session_id FROM {}").format(new_sessions))}
    new_dir, changed_dir = _split(staged_dir, work_dir, digests, unchanged, new)
    return ChangePlan(total, len(unchanged), new_dir, changed_dir)


def _split(
    staged_dir: Path, work_dir: Path, digests: BatchDigests, unchanged: set[str], new: set[str]
) -> tuple[Path | None, Path | None]:
    """Write the new and the other changed sessions' lines (and their details) to two directories."""
    directories = {"new": work_dir / "new", "changed": work_dir / "changed"}
    counts = {"new": 0, "changed": 0}
    part_of_raw_id: dict[Any, str] = {}
    decode_session = msgspec.json.Decoder(_SessionHead).decode
    decode_detail = msgspec.json.Decoder(_DetailHead).decode
    for directory in directories.values():
        directory.mkdir(parents=True, exist_ok=True)
    with (
        (directories["new"] / staging.SESSIONS_FILE).open("wb") as new_out,
        (directories["changed"] / staging.SESSIONS_FILE).open("wb") as changed_out,
    ):
        outputs = {"new": new_out, "changed": changed_out}
        lines = _lines(staged_dir / staging.SESSIONS_FILE)
        for session_id, line in zip(digests.order, lines, strict=True):
            if session_id in unchanged:
                continue
            part = "new" if session_id in new else "changed"  # no valid id: the transform reports it
            outputs[part].write(line + b"\n")
            counts[part] += 1
            part_of_raw_id[_session_id(line, decode_session)] = part
    with (
        (directories["new"] / staging.DETAILS_FILE).open("wb") as new_out,
        (directories["changed"] / staging.DETAILS_FILE).open("wb") as changed_out,
    ):
        outputs = {"new": new_out, "changed": changed_out}
        for line in _lines(staged_dir / staging.DETAILS_FILE):
            part = part_of_raw_id.get(_detail_session_id(line, decode_detail))
            if part is not None:
                outputs[part].write(line + b"\n")
    return (
        directories["new"] if counts["new"] else None,
        directories["changed"] if counts["changed"] else None,
    )


def record(conn: Connection, schema: str) -> None:
    """Store the digests of the sessions this transaction loaded (called after their rows)."""
    conn.execute(_query("sources_record.sql", sources=sql.Identifier(schema, "etl_session_sources")))
