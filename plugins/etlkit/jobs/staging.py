"""Run-scoped staging of port outputs: zstd Parquet parts plus a manifest written last.

Layout: ``<run_dir>/<component_id>/<port>/part-00000.parquet`` … (at most ``PART_ROWS`` rows each,
one row group per batch written) and ``_manifest.json`` (output id, row count, parts, schema
fingerprint). The manifest marks the output complete; a task first removes its own partial output
from an earlier try. ``run_dir`` is a ``pathlib.Path`` or an ``airflow.sdk.ObjectStoragePath``
(``file://``, ``s3://`` through a connection): only operations both offer are used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from etlkit.common.errors import BadInputError
from etlkit.jobs.arrowlib import pa
from etlkit.jobs.columns import Schema, arrow_schema, schema_fingerprint

MANIFEST_FILE = "_manifest.json"
PART_ROWS = 1_000_000
COMPRESSION = "zstd"
# Object stores: bytes an open part buffers before it uploads them (a multipart part; S3's minimum is
# 5 MiB) and reads ahead. s3fs's default, 50 MiB, is held by every routed port of a component.
TRANSFER_BLOCK_BYTES = 8 * 2**20


class StagingError(RuntimeError):
    """Staged data is missing or was written for another version of the job file."""


class StagedOutputMissing(StagingError):
    """An upstream output has no manifest here although its component finished."""

    def __init__(self, directory):
        super().__init__(f"staged output {directory} is incomplete or missing")
        self.directory = directory


def missing_output_message(
    directory, run_dir, staging_root: str | None, prepared_on: str | None, host: str
) -> str:
    """Why a finished upstream's output is not here, and what to do: retrying cannot make it appear."""
    run_dir_state = "exists" if run_dir.is_dir() else "does not exist"
    root = staging_root or run_dir.parent.parent
    return (
        f"staged output {directory} is incomplete or missing although its component finished. Either the "
        f"staging root {root} is not shared between workers (this task runs on {host}; the run's staging "
        f"directory, created by _prepare on {prepared_on or 'an unknown host'}, {run_dir_state} here): set "
        f"staging.root of Variable 'declarative_jobs' to a volume every worker mounts (or to an s3:// "
        f"bucket with staging.conn_id), then clear the run "
        f"from the sources; or the upstream output was removed (its try was cleared, or housekeeping removed "
        f"the run after staging.retention_days): clear the run from the sources"
    )


def safe_run_id(run_id: str) -> str:
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', run_id)[:80]}-{digest}"


def staging_path(root: str | Path, conn_id: str | None = None):
    """A local ``Path`` for a plain path; an ``ObjectStoragePath`` for a URI (``file://``, ``s3://`` …)."""
    text = str(root)
    if "://" not in text:
        return Path(text)
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(text, conn_id=conn_id) if conn_id else ObjectStoragePath(text)


def run_directory_uri(staging_root: str | Path, dag_id: str, run_id: str) -> str:
    """The run's staging directory as text, without the connection id (``str()`` of an
    ``ObjectStoragePath`` with a ``conn_id`` embeds it as ``s3://conn@bucket/...``)."""
    return f"{str(staging_root).rstrip('/')}/{dag_id}/{safe_run_id(run_id)}"


def run_directory(staging_root, dag_id: str, run_id: str, conn_id: str | None = None):
    return staging_path(run_directory_uri(staging_root, dag_id, run_id), conn_id)


def is_local(path) -> bool:
    return isinstance(path, Path) or getattr(path, "protocol", None) in ("file", "local")


def open_staged(path, mode: str):
    """A staged file opened on the path's own filesystem: ``ObjectStoragePath.open`` wraps the file to
    report every ``read``/``write`` call as hook lineage, which would list each part (and the staging
    connection id in its URI) as a dataset of the task, once per call pyarrow makes."""
    if isinstance(path, Path):
        return path.open(mode)
    return path.fs.open(path.path, mode, block_size=TRANSFER_BLOCK_BYTES)


def write_staged_text(path, text: str) -> None:
    with open_staged(path, "wb") as handle:
        handle.write(text.encode())


def read_staged_text(path) -> str:
    with open_staged(path, "rb") as handle:
        return handle.read().decode()


def ensure_directory(path) -> None:
    """Local roots need their directories; object stores have none. ``mkdir`` is never called there:
    s3fs creates a missing *bucket* for it, which would hide a mistyped bucket name."""
    if is_local(path):
        path.mkdir(parents=True, exist_ok=True)


def remove_tree(path) -> None:
    """Removes a directory (or object prefix) and everything under it; absent is fine."""
    if isinstance(path, Path):
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.rmdir(recursive=True)


def remove_stale_staged_runs(staging_root, retention_days: float, now: float) -> list[str]:
    """Deletes ``<root>/<dag_id>/<run>/`` with nothing written for ``retention_days``; returns them.

    ``staging_root`` is a ``Path`` or an ``ObjectStoragePath``. Failed runs leave their staged data
    behind for a retry; this bounds how long it stays.
    """
    if isinstance(staging_root, Path):
        from etlkit.common.staging import remove_stale_runs

        return [str(run) for run in remove_stale_runs(staging_root, retention_days, now)]
    if not staging_root.is_dir():
        return []
    cutoff = now - retention_days * 86400
    removed = []
    for dag_dir in sorted(staging_root.iterdir(), key=str):
        if not dag_dir.is_dir():
            continue
        for run_dir in sorted(dag_dir.iterdir(), key=str):
            written = [p.stat().st_mtime for p in run_dir.rglob("*") if p.is_file()]
            if run_dir.is_dir() and max(written, default=0) < cutoff:
                remove_tree(run_dir)
                removed.append(str(run_dir))
    return removed


def schema_mismatch(component_id: str, port: str, expected: pa.Schema, actual: pa.Schema) -> str | None:
    """Why ``actual`` is not ``expected`` (names, order, Arrow types), naming the first column that differs."""
    for position in range(max(len(expected), len(actual))):
        want = expected.field(position) if position < len(expected) else None
        got = actual.field(position) if position < len(actual) else None
        if want is not None and got is not None and want.name == got.name and want.type == got.type:
            continue
        if got is None:
            detail = f"column {want.name!r} ({want.type}) is missing"
        elif want is None:
            detail = f"column {got.name!r} ({got.type}) is not in the port schema"
        elif want.name != got.name:
            detail = f"column {position + 1} is {got.name!r}, expected {want.name!r}"
        else:
            detail = f"column {want.name!r} is {got.type}, expected {want.type}"
        return f"{component_id}: batch written to port {port!r} does not match its schema: {detail}"
    return None


class PortWriter:
    """Writes the batches of one port, checking each against the port schema."""

    def __init__(self, directory, schema: Schema, component_id: str = "?", port: str = "?"):
        self.directory = directory
        self.schema = schema
        self.arrow_schema = arrow_schema(schema)
        self.component_id, self.port = component_id, port
        self.rows = 0
        self.chunks = 0
        self.parts: list[str] = []
        self._part_rows = 0
        self._file = None
        self._writer = None  # a pyarrow.parquet.ParquetWriter once the first batch comes
        ensure_directory(directory)

    def check(self, batch: pa.RecordBatch) -> None:
        problem = schema_mismatch(self.component_id, self.port, self.arrow_schema, batch.schema)
        if problem is not None:
            raise BadInputError(problem)

    def write(self, batch: pa.RecordBatch) -> None:
        self.check(batch)
        if batch.num_rows == 0:
            return
        offset = 0
        while offset < batch.num_rows:
            if self._writer is None or self._part_rows >= PART_ROWS:
                self._next_part()
            piece = batch.slice(offset, PART_ROWS - self._part_rows)
            self._writer.write_batch(piece, row_group_size=piece.num_rows)
            self._part_rows += piece.num_rows
            offset += piece.num_rows
        self.rows += batch.num_rows
        self.chunks += 1

    def _next_part(self) -> None:
        self._close_part()
        name = f"part-{len(self.parts):05d}.parquet"
        self._file = open_staged(self.directory / name, "wb")
        import pyarrow.parquet as pq  # imported on use: a fused run that stages nothing saves ~10 MiB

        # No dictionary pages: their hash tables cost a writer ~16 MiB; zstd takes most of the gain.
        self._writer = pq.ParquetWriter(
            self._file, self.arrow_schema, compression=COMPRESSION, use_dictionary=False
        )
        self.parts.append(name)
        self._part_rows = 0

    def _close_part(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._file.close()
            self._writer = self._file = None

    def commit(self) -> None:
        self._close_part()
        manifest = {
            # Identifies this instance of the output: a writer retried over the same staged input
            # sees the same id; a re-run upstream component writes a new one.
            "output_id": uuid.uuid4().hex,
            "rows": self.rows,
            "chunks": self.chunks,
            "parts": self.parts,
            "fingerprint": schema_fingerprint(self.schema),
            "columns": [c.as_dict() for c in self.schema],
        }
        _write_last(self.directory / MANIFEST_FILE, json.dumps(manifest))

    def abort(self) -> None:
        try:
            self._close_part()
        except Exception:
            pass


def _write_last(path, text: str) -> None:
    """Local files appear complete through a rename; an object store's single PUT is atomic already."""
    if isinstance(path, Path):
        temporary = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        temporary.write_text(text)
        os.replace(temporary, path)
    else:
        write_staged_text(path, text)


def clear_component_output(run_dir, component_id: str) -> None:
    remove_tree(run_dir / component_id)


def _manifest(directory) -> dict:
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise StagedOutputMissing(directory)
    return json.loads(read_staged_text(manifest_path))


def read_port(directory, schema: Schema, chunk_size: int) -> Iterator[pa.RecordBatch]:
    """The staged batches of one port output, as they were written, cut to at most ``chunk_size`` rows."""
    manifest = _manifest(directory)
    if manifest["fingerprint"] != schema_fingerprint(schema):
        raise StagingError(
            f"staged output of component {directory.parent.name!r} port {directory.name!r} ({directory}) has "
            f"schema fingerprint {manifest['fingerprint']!r}, expected {schema_fingerprint(schema)!r}: the job "
            "file changed during the run or the staged output was altered; clear the run from the sources"
        )
    if "parts" not in manifest:
        raise StagingError(
            f"staged output {directory} was written by an earlier engine version; clear the run from the sources"
        )
    import pyarrow.parquet as pq

    expected = arrow_schema(schema)
    for name in manifest["parts"]:
        with open_staged(directory / name, "rb") as handle:
            part = pq.ParquetFile(handle)
            for group in range(part.num_row_groups):  # a row group is one batch its writer emitted
                for batch in part.read_row_group(group).to_batches(max_chunksize=chunk_size):
                    if batch.schema != expected:  # Parquet keeps the Arrow schema; a cast fixes only metadata
                        batch = batch.cast(expected)
                    yield batch
