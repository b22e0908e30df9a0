"""The ``sync_sessions`` step (spec §4–§5): extract the batch and load tables 13–20, in one task try.

Extraction stages into a worker-local temporary directory that only this call creates and reads and
that is gone when it returns or raises, so staged personal data never outlives the task and a load
never sees another attempt's files. The load starts only when the staged files hold exactly what
the extraction counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import Connection

from etlkit.enderturing import extract, load, staging
from etlkit.enderturing.filters import Pass
from etlkit.enderturing.settings import EnderTuringSettings

StagedBatchIncompleteError = load.StagedBatchIncompleteError


@dataclass
class SyncResult:
    report: extract.ExtractReport
    tables: dict[str, dict] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)


def sync_sessions(
    client: extract.Client,
    passes: list[Pass],
    settings: EnderTuringSettings,
    connect: Callable[[], Connection],
    schema: str,
    transform_workers: int = 1,
    temp_root: str | Path | None = None,
    *,
    detail_concurrency: int,
) -> SyncResult:
    """List, fetch details, transform and load the batch in ONE transaction; staging removed on exit."""
    with staging.task_directory(temp_root) as work:
        distinct, report = extract.list_sessions(client, passes, settings, work)
        extract.fetch_details(
            client, distinct, settings, work / staging.DETAILS_FILE, report, concurrency=detail_concurrency
        )
        check_staged(work, report)
        with connect() as conn:
            loaded = load.load_session_batch(conn, schema, work, transform_workers, report.sessions)
    tables = load.table_counts(loaded.tables)
    tables["sessions"]["unchanged_skipped"] = loaded.unchanged
    return SyncResult(report, tables, loaded.warnings)


def check_staged(work: Path, report: extract.ExtractReport) -> None:
    """The completeness check before any load: one staged line per distinct session and per
    successful detail call."""
    expected = {
        staging.SESSIONS_FILE: report.sessions,
        staging.DETAILS_FILE: report.detail_calls - report.detail_failures,
    }
    for name, count in expected.items():
        staged = staging.count_lines(work / name)
        if staged != count:
            raise StagedBatchIncompleteError(
                f"{name}: {staged} records staged, {count} extracted: nothing loaded "
                "(a bug or a full disk on the worker, not a data problem)"
            )
