"""Local files of the visits pipeline: staging download, line iteration, verified archive copies."""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from etlkit.common.errors import BadInputError, TransientError

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
UTF8_BOM = codecs.BOM_UTF8


class ArchiveConflictError(BadInputError):
    """An archive with this name exists with different content: never overwrite, a human decides."""


@dataclass(frozen=True)
class StagedFile:
    path: Path
    size: int
    sha256: str
    encoding: str  # 'utf-8' or 'latin-1'


def stream_to_staging(source: BinaryIO, target: Path, expected_size: int) -> StagedFile:
    """Copy ``source`` to ``target`` via ``.part``, hashing and choosing the encoding in one pass."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    is_utf8 = True
    size = 0
    with open(part, "wb") as out:
        while chunk := source.read(CHUNK_BYTES):
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            if is_utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    is_utf8 = False
    if is_utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            is_utf8 = False
    if size != expected_size:
        part.unlink(missing_ok=True)
        raise TransientError(f"downloaded {size} bytes of {target.name}, the server said {expected_size}")
    os.replace(part, target)
    return StagedFile(target, size, digest.hexdigest(), "utf-8" if is_utf8 else "latin-1")


def iter_lines(path: Path, encoding: str, max_line_chars: int) -> Iterator[tuple[int, str]]:
    """Physical lines as ``(line_number, text)`` without terminators (CRLF or LF).

    A line longer than the limit is cut (its rest is skipped): it fails ``row.too_long`` anyway,
    and memory stays bounded whatever the file holds.
    """
    max_bytes = max_line_chars * 4 + 2
    errors = "strict" if encoding == "utf-8" else "replace"
    with open(path, "rb") as handle:
        number = 0
        while raw := handle.readline(max_bytes):
            cut = not raw.endswith(b"\n") and len(raw) == max_bytes
            if cut:
                _skip_rest_of_line(handle, max_bytes)
            if number == 0 and raw.startswith(UTF8_BOM) and encoding == "utf-8":
                raw = raw[len(UTF8_BOM) :]
            raw = raw.rstrip(b"\n").removesuffix(b"\r") if not cut else raw
            number += 1
            yield number, raw.decode(encoding, errors="replace" if cut else errors)


def _skip_rest_of_line(handle: BinaryIO, max_bytes: int) -> None:
    while rest := handle.readline(max_bytes):
        if rest.endswith(b"\n"):
            return


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _zip_member_sha256(archive: Path, member: str) -> str | None:
    try:
        with zipfile.ZipFile(archive) as zf:
            if zf.namelist() != [member]:
                return None
            digest = hashlib.sha256()
            with zf.open(member) as handle:
                while chunk := handle.read(CHUNK_BYTES):
                    digest.update(chunk)
            return digest.hexdigest()
    except zipfile.BadZipFile:
        return None


def write_verified_zip(source: Path, target: Path, member: str, sha256: str) -> bool:
    """Zip ``source`` as the only member ``member``; returns False when a matching zip is reused."""

    def member_matches(path: Path) -> bool:
        return _zip_member_sha256(path, member) == sha256

    def write(part: Path) -> None:
        with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.write(source, arcname=member)

    return _publish_verified(target, write, member_matches)


def write_verified_copy(source: Path, target: Path, sha256: str) -> bool:
    """Byte-identical copy (quarantine); returns False when a matching copy is reused."""
    return _publish_verified(
        target, lambda part: shutil.copyfile(source, part), lambda p: sha256_of(p) == sha256
    )


def _publish_verified(target: Path, write, matches) -> bool:
    """Write to a private ``.part``, fsync, verify, then hard-link into place.

    ``os.link`` never replaces an existing file, so two concurrent writers cannot clobber each
    other and an archive with other content is never overwritten.
    """
    if target.exists():
        return _reuse(target, matches)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        write(part)
        with open(part, "rb+") as handle:
            os.fsync(handle.fileno())
        if not matches(part):
            raise TransientError(f"verification of {part} failed: it does not match the original")
        try:
            os.link(part, target)
        except FileExistsError:
            return _reuse(target, matches)
        _fsync_dir(target.parent)
        return True
    finally:
        part.unlink(missing_ok=True)


def _reuse(target: Path, matches) -> bool:
    if matches(target):
        return False
    raise ArchiveConflictError(f"{target} exists with different content; refusing to overwrite it")


def purge_old_staging(staging_root: Path, max_age_s: float = 7 * 24 * 3600) -> int:
    """Remove run staging directories older than ``max_age_s``; returns how many."""
    if not staging_root.is_dir():
        return 0
    cutoff = time.time() - max_age_s
    removed = 0
    for entry in staging_root.iterdir():
        if entry.is_dir() and entry.stat().st_mtime < cutoff:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed
