"""Worker-local files of one task try: raw NDJSON per window, de-duplicated sessions, per-session
details, and per-table spool files in PostgreSQL's COPY text format (rows never travel through XCom).

They hold personal data: they live in a temporary directory that this try creates and removes when
it ends, whatever the outcome (spec §5, "Spooling and cleanup"); nothing is shared between tries.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import msgspec

from etlkit.enderturing.tables import Table

SESSIONS_FILE = "sessions.ndjson"
DETAILS_FILE = "details.ndjson"
WINDOWS_DIR = "windows"
SPOOL_DIR = "spool"
# <prefix><pid>-<random>: the pid tells a killed try's leftovers from a running try's directory.
TEMP_PREFIX = "etlkit-enderturing-"
_TEMP_NAME = re.compile(rf"^{re.escape(TEMP_PREFIX)}(\d+)-")

log = logging.getLogger(__name__)


@contextmanager
def task_directory(root: str | Path | None = None) -> Iterator[Path]:
    """A fresh directory for this try under the worker's temp root, removed when the block ends
    (success, failure or exception). Leftovers of tries whose process is gone (SIGKILL, out of
    memory: no cleanup ran) are removed first."""
    root = Path(root or tempfile.gettempdir())
    for orphan in remove_orphaned(root):
        log.info("removed the staging directory of a killed task: %s", orphan)
    with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=root) as directory:
        yield Path(directory)


def remove_orphaned(root: Path) -> list[Path]:
    """Delete ``root``'s staging directories whose process no longer runs; returns them."""
    removed = []
    for entry in sorted(root.glob(f"{TEMP_PREFIX}*")):
        match = _TEMP_NAME.match(entry.name)
        if match and entry.is_dir() and not _process_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def write_ndjson(handle: IO[str], items: Iterable[Any]) -> int:
    count = 0
    for item in items:
        handle.write(json.dumps(item, ensure_ascii=False, separators=(",", ":")))
        handle.write("\n")
        count += 1
    return count


def read_ndjson(path: Path, part: int = 0, parts: int = 1) -> Iterator[Any]:
    """Decoded lines of ``path``; with ``parts`` > 1 only every ``parts``-th line from ``part`` on."""
    decode = msgspec.json.decode  # several times faster than json.loads, same JSON semantics
    with path.open("rb") as handle:
        for line_no, line in enumerate(handle):
            if line_no % parts == part and line.strip():
                yield decode(line)


def dedupe_sessions(window_files: list[Path], target: Path) -> int:
    """Write the last copy of every session id across ``window_files`` to ``target``; returns how
    many. Memory holds one id and one position per session, never session bodies."""
    last_seen: dict[bytes | str, int] = {}  # compact id -> file number << 32 | line number
    for file_no, path in enumerate(window_files):
        for line_no, item in enumerate(read_ndjson(path)):
            last_seen[_compact(_session_id(item, path, line_no))] = file_no << 32 | line_no
    with target.open("w", encoding="utf-8") as out:
        for file_no, path in enumerate(window_files):
            for line_no, item in enumerate(read_ndjson(path)):
                if last_seen[_compact(_session_id(item, path, line_no))] == file_no << 32 | line_no:
                    write_ndjson(out, [item])
    return len(last_seen)


def _compact(session_id: str) -> bytes | str:
    """A canonical UUID string as its 16 bytes (a third of the memory); any other id as it is."""
    try:
        value = uuid.UUID(session_id)
    except ValueError:
        return session_id
    return value.bytes if str(value) == session_id else session_id


def _session_id(item: Any, path: Path, line_no: int) -> str:
    from etlkit.common.errors import BadInputError

    session_id = item.get("id") if isinstance(item, dict) else None
    if not isinstance(session_id, str) or not session_id:
        raise BadInputError(
            f"/sessions: item {line_no} of {path.name} has no 'id' (a non-empty string); "
            "content not shown: personal data"
        )
    return session_id


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": ""})


_NEEDS_ESCAPE = re.compile("[\\\\\t\n\r\x00]")


def _escape(value: str) -> str:
    return value.translate(_ESCAPES) if _NEEDS_ESCAPE.search(value) else value


_FORMATTERS: dict[type, Any] = {
    str: _escape,
    int: str,
    float: repr,
    bool: lambda value: "t" if value else "f",
    type(None): lambda value: "\\N",
}


def copy_field(value: Any) -> str:
    """One value in PostgreSQL's COPY text format."""
    formatter = _FORMATTERS.get(type(value))
    return formatter(value) if formatter else _escape(str(value))


class CopySpool:
    """Per-table files of COPY text rows plus the parent keys whose children are replaced."""

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._rows: dict[str, IO[str]] = {}
        self._replace: dict[str, IO[str]] = {}
        self.row_counts: dict[str, int] = {}
        self.replace_counts: dict[str, int] = {}

    def rows_path(self, table: Table) -> Path:
        return self.directory / f"{table.name}.copy"

    def replace_path(self, table: Table) -> Path:
        return self.directory / f"{table.name}.replace"

    def _handle(self, handles: dict[str, IO[str]], path: Path, name: str) -> IO[str]:
        handle = handles.get(name)
        if handle is None:
            handle = handles[name] = path.open("w", encoding="utf-8", buffering=1 << 20)
        return handle

    def add(self, table: Table, row: tuple) -> None:
        handle = self._rows.get(table.name) or self._handle(self._rows, self.rows_path(table), table.name)
        formatters = _FORMATTERS
        handle.write(
            "\t".join([formatters[type(v)](v) if type(v) in formatters else copy_field(v) for v in row])
        )
        handle.write("\n")
        self.row_counts[table.name] = self.row_counts.get(table.name, 0) + 1

    def replace(self, table: Table, parent_key: Any) -> None:
        handle = self._replace.get(table.name) or self._handle(
            self._replace, self.replace_path(table), table.name
        )
        handle.write(copy_field(parent_key) + "\n")
        self.replace_counts[table.name] = self.replace_counts.get(table.name, 0) + 1

    def close(self) -> None:
        for handle in [*self._rows.values(), *self._replace.values()]:
            handle.close()

    def __enter__(self) -> CopySpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
