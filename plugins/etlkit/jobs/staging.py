"""Run-scoped staging of port outputs: typed JSON-lines chunks plus a manifest written last.

Layout: ``<run_dir>/<component_id>/<port>/data.jsonl`` (one line per chunk, a JSON array of
rows) and ``_manifest.json`` (output id, row count, chunks, schema fingerprint). The manifest marks the
output complete; a task first removes its own partial output from an earlier try.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from etlkit.jobs.columns import Schema, decoder_for, schema_fingerprint

DATA_FILE = "data.jsonl"
MANIFEST_FILE = "_manifest.json"


class StagingError(RuntimeError):
    """Staged data is missing or was written for another version of the job file."""


class StagedOutputMissing(StagingError):
    """An upstream output has no manifest here although its component finished."""

    def __init__(self, directory: Path):
        super().__init__(f"staged output {directory} is incomplete or missing")
        self.directory = directory


def missing_output_message(
    directory: Path, run_dir: Path, staging_root: str | None, prepared_on: str | None, host: str
) -> str:
    """Why a finished upstream's output is not here, and what to do: retrying cannot make it appear."""
    run_dir_state = "exists" if run_dir.is_dir() else "does not exist"
    root = staging_root or run_dir.parent.parent
    return (
        f"staged output {directory} is incomplete or missing although its component finished. Either the "
        f"staging root {root} is not shared between workers (this task runs on {host}; the run's staging "
        f"directory, created by _prepare on {prepared_on or 'an unknown host'}, {run_dir_state} here): set "
        f"staging.root of Variable 'declarative_jobs' to a volume every worker mounts, then clear the run "
        f"from the sources; or the upstream output was removed (its try was cleared, or housekeeping removed "
        f"the run after staging.retention_days): clear the run from the sources"
    )


def safe_run_id(run_id: str) -> str:
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', run_id)[:80]}-{digest}"


def run_directory(staging_root: str | Path, dag_id: str, run_id: str) -> Path:
    return Path(staging_root) / dag_id / safe_run_id(run_id)


def _encode(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot stage a {type(value).__name__}")


class PortWriter:
    def __init__(self, directory: Path, schema: Schema):
        self.directory = directory
        self.schema = schema
        self.rows = 0
        self.chunks = 0
        directory.mkdir(parents=True, exist_ok=True)
        self._file = (directory / DATA_FILE).open("w", encoding="utf-8")

    def write(self, rows: list[list]) -> None:
        if not rows:
            return
        self._file.write(json.dumps(rows, separators=(",", ":"), default=_encode))
        self._file.write("\n")
        self.rows += len(rows)
        self.chunks += 1

    def commit(self) -> None:
        self._file.close()
        manifest = {
            # Identifies this instance of the output: a writer retried over the same staged input
            # sees the same id; a re-run upstream component writes a new one.
            "output_id": uuid.uuid4().hex,
            "rows": self.rows,
            "chunks": self.chunks,
            "fingerprint": schema_fingerprint(self.schema),
            "columns": [c.as_dict() for c in self.schema],
        }
        (self.directory / MANIFEST_FILE).write_text(json.dumps(manifest))

    def abort(self) -> None:
        self._file.close()


def clear_component_output(run_dir: Path, component_id: str) -> None:
    shutil.rmtree(run_dir / component_id, ignore_errors=True)


def _manifest(directory: Path) -> dict:
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise StagedOutputMissing(directory)
    manifest = json.loads(manifest_path.read_text())
    # Outputs staged before ids existed: the manifest's write time stands in for the id.
    manifest.setdefault("output_id", f"{directory}@{manifest_path.stat().st_mtime_ns}")
    return manifest


def output_id(directory: Path) -> str:
    """The id of the committed output in ``directory`` (see ``PortWriter.commit``)."""
    return _manifest(directory)["output_id"]


def read_port(directory: Path, schema: Schema) -> Iterator[list[list]]:
    """The staged chunks of one port output, decoded to Python values."""
    manifest = _manifest(directory)
    if manifest["fingerprint"] != schema_fingerprint(schema):
        raise StagingError(
            f"staged output {directory} has schema {manifest['fingerprint']!r}, expected "
            f"{schema_fingerprint(schema)!r}: the job file changed during the run; clear the run from the sources"
        )
    decoders = [(i, d) for i, c in enumerate(schema) if (d := decoder_for(c)) is not None]
    with (directory / DATA_FILE).open(encoding="utf-8") as lines:
        for line in lines:
            rows = json.loads(line)
            if decoders:
                for row in rows:
                    for index, decode in decoders:
                        if row[index] is not None:
                            row[index] = decode(row[index])
            yield rows
