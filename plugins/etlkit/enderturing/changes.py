"""Skip the sessions of a staged batch that are unchanged since their last load, before the transform.

A session's *source digest* covers everything its rows are made of: its staged listing item, the
staged bodies of its per-session calls (scores, summary, comments) and the code that turns them into
rows (``transform.py``, ``tables.py``, ``staging.py``). The warehouse keeps the digest of the last
committed load of each session in ``etl_session_sources``. Inside the load's transaction, after the
advisory lock, the batch's digests are compared with it: a session whose digest is unchanged (and
whose ``sessions`` row is still there) is neither transformed nor sent; its rows are exactly what
that load wrote, ``etl_loaded_at`` included. Every other session goes through the transform and the
load, and its new digest is written in the same transaction.

Memory stays flat in the batch: the client streams one hash per staged line into temp tables, the
database combines them per session and classifies the sessions, and the client streams that
classification back beside the staged lines to split them.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
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
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NEW, CHANGED, UNCHANGED = "n", "c", "u"
COPY_NULL = "\\N"


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


def _lines(path: Path) -> Iterator[bytes]:
    if not path.exists():
        return
    with path.open("rb") as handle:
        for line in handle:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line


_decode_session = msgspec.json.Decoder(_SessionHead).decode
_decode_detail = msgspec.json.Decoder(_DetailHead).decode


def _normalised(raw_id: Any) -> str | None:
    if not isinstance(raw_id, str):
        return None
    if _CANONICAL_UUID.fullmatch(raw_id):
        return raw_id  # already canonical: the common case, without parsing
    try:
        return str(uuid.UUID(raw_id))
    except ValueError:
        return None


def _query(name: str, **parts: sql.Composable) -> sql.Composed:
    return sql.SQL(load_sql(PIPELINE, name).strip()).format(**parts)


def _copy_line_hashes(conn: Connection, table: str, path: Path, key: bytes, decode) -> int:
    """One row per staged line: its number, its session's id (NULL: no UUID) and its hash.

    The id is read without decoding the line when it is the line's first key and has no escapes:
    staged lines are ``json.dumps`` of a dict, so a key appears once and the first key is the
    object's. Anything else takes the full decode. A hot loop, hence inlined."""
    prefix = b'{"' + key + b'":"'
    start = len(prefix)
    canonical = _CANONICAL_UUID.fullmatch
    blake2b = hashlib.blake2b
    count = 0
    block: list[str] = []
    statement = sql.SQL("COPY {} (line_no, session_id, line_hash) FROM STDIN").format(sql.Identifier(table))
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for count, line in enumerate(_lines(path), start=1):
            raw = None
            if line.startswith(prefix):
                end = line.find(b'"', start)
                if end > 0 and b"\\" not in line[start:end]:
                    raw = line[start:end].decode("utf-8", "replace")
            if raw is None:
                raw = getattr(decode(line), key.decode())
            session_id = raw if isinstance(raw, str) and canonical(raw) else _normalised(raw)
            block.append(
                f"{count}\t{session_id or COPY_NULL}\t\\\\x{blake2b(line, digest_size=DIGEST_SIZE).hexdigest()}\n"
            )
            if len(block) == 2048:
                copy.write("".join(block))
                block.clear()
        copy.write("".join(block))
    return count


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
    when it holds exactly that part). The batch's digests stay in ``batch_sources`` for ``record``."""
    conn.execute(_query("staged_lines_create.sql"))
    total = _copy_line_hashes(
        conn, "staged_sessions", staged_dir / staging.SESSIONS_FILE, b"id", _decode_session
    )
    _copy_line_hashes(
        conn, "staged_details", staged_dir / staging.DETAILS_FILE, b"session_id", _decode_detail
    )
    conn.execute("ANALYZE staged_sessions")
    conn.execute("ANALYZE staged_details")
    conn.execute(_query("sources_create.sql", code_version=sql.Literal(code_version())))
    conn.execute("ANALYZE batch_sources")
    sessions = sql.Identifier(schema, "sessions")
    sources = sql.Identifier(schema, "etl_session_sources")
    unchanged = conn.execute(_query("sources_unchanged.sql", sources=sources, sessions=sessions)).rowcount
    new_sessions = sql.Identifier(NEW_SESSIONS)
    conn.execute(_query("new_sessions_create.sql", new_sessions=new_sessions, sessions=sessions))
    conn.execute(sql.SQL("ANALYZE {}").format(new_sessions))
    new_count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(new_sessions)).fetchone()[0]
    if new_count == total:
        return ChangePlan(total, 0, staged_dir, None)
    if not new_count and not unchanged:
        return ChangePlan(total, 0, None, staged_dir)
    new_dir, changed_dir = _split(conn, staged_dir, work_dir)
    return ChangePlan(total, unchanged, new_dir, changed_dir)


def _split(conn: Connection, staged_dir: Path, work_dir: Path) -> tuple[Path | None, Path | None]:
    """Write the new and the other changed sessions' lines (and their details) to two directories,
    reading each staged file beside its lines' classes, streamed from the database in line order."""
    directories = {NEW: work_dir / "new", CHANGED: work_dir / "changed"}
    counts = {NEW: 0, CHANGED: 0}
    for directory in directories.values():
        directory.mkdir(parents=True, exist_ok=True)
    for name, source in (
        (staging.SESSIONS_FILE, "staged_sessions"),
        (staging.DETAILS_FILE, "staged_details"),
    ):
        statement = _query("staged_lines_classes.sql", lines=sql.Identifier(source))
        with (
            (directories[NEW] / name).open("wb") as new_out,
            (directories[CHANGED] / name).open("wb") as changed_out,
            conn.cursor() as cursor,
            cursor.copy(statement) as copy,
        ):
            outputs = {NEW: new_out, CHANGED: changed_out}
            for line, (part,) in zip(_lines(staged_dir / name), copy.rows(), strict=True):
                if part != UNCHANGED:
                    outputs[part].write(line + b"\n")
                    if name == staging.SESSIONS_FILE:
                        counts[part] += 1
    return (
        directories[NEW] if counts[NEW] else None,
        directories[CHANGED] if counts[CHANGED] else None,
    )


def record(conn: Connection, schema: str) -> None:
    """Store the digests of the sessions this transaction loaded (called after their rows)."""
    conn.execute(_query("sources_record.sql", sources=sql.Identifier(schema, "etl_session_sources")))
