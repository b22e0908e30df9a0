"""The visits DAG's tasks as plain functions (the operators open the hooks and call these), and the
typed values the tasks pass each other through XCom."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from etlkit.common.alerting import alert_context
from etlkit.common.errors import ConfigurationError
from etlkit.common.metrics import RunMetrics
from etlkit.visits import files
from etlkit.visits.process import (
    NOT_DONE,
    RemoteFile,
    ReportProcessor,
    RunInfo,
    check_give_up,
    list_eligible,
    parse_give_up,
    process_in_order,
)
from etlkit.visits.settings import VisitsSettings
from etlkit.visits.store import VisitsStore

log = logging.getLogger(__name__)

# The XCom key of process_files' per-file outcomes (pushed on failure too; UIs and tests read it).
FILE_OUTCOMES_KEY = "file_outcomes"


@dataclass(frozen=True)
class ListedReports:
    """What list_remote_files returns: the eligible files, oldest ``<n>`` first."""

    files: tuple[RemoteFile, ...]

    def to_xcom(self) -> list[dict[str, Any]]:
        return [remote.as_dict() for remote in self.files]

    @classmethod
    def from_xcom(cls, value: Sequence[Mapping[str, Any]]) -> ListedReports:
        return cls(tuple(RemoteFile.from_dict(dict(item)) for item in value))


@dataclass(frozen=True)
class FileOutcomes:
    """What process_files publishes under ``FILE_OUTCOMES_KEY``: one ``RunMetrics`` per file handled,
    failed (``FAILED``) or held back behind a failed one (``HELD_BACK``)."""

    files: tuple[RunMetrics, ...] = ()

    def to_xcom(self) -> list[dict[str, Any]]:
        return [metrics.as_xcom() for metrics in self.files]

    @classmethod
    def from_xcom(cls, value: Sequence[Mapping[str, Any]] | None) -> FileOutcomes:
        """None (process_files never ran: an upstream task failed) is no outcome at all."""
        return cls(tuple(RunMetrics(**dict(item)) for item in value or ()))

    def status_of(self, listed: ListedReports) -> dict[str, str | None]:
        """Every listed file's status; None for a file the run did not reach."""
        by_file = {metrics.extra.get("file"): metrics.extra.get("status") for metrics in self.files}
        return {remote.name: by_file.get(remote.name) for remote in listed.files}


def reference_date(override: date | None, run_after: datetime, timezone: str) -> date:
    """R (spec §5.2): the ``reference_date`` setting, else the date of the trigger time in ``timezone``.

    The trigger time is ``run_after`` for every kind of run. The logical date is not: with the
    DAG's one-day ``CronTriggerTimetable`` a scheduled run's logical date is the interval's start,
    the day before its trigger.
    """
    return override or run_after.astimezone(ZoneInfo(timezone)).date()


def refresh_period_counters(
    open_store: Callable[[], AbstractContextManager[VisitsStore]], run: RunInfo
) -> int:
    """Every visitor's year and month counters brought to R, even on a run with no files."""
    if run.dry_run:
        log.info("dry run: period counters for R=%s not refreshed", run.reference_date)
        return 0
    with open_store() as store:
        changed = store.refresh_period_counters(run.reference_date)
    log.info("period counters refreshed for R=%s: %s visitors changed", run.reference_date, changed)
    return changed


def list_reports(sftp, settings: VisitsSettings, file_pattern: str | None) -> tuple[ListedReports, list[str]]:
    """The eligible files (``file_pattern``, a run's regex, narrows ``settings.file_pattern``) and the
    names of everything in the remote directory."""
    try:
        eligible, names = list_eligible(sftp, settings, file_pattern or None)
    except FileNotFoundError as exc:
        raise ConfigurationError(f"remote_dir {settings.remote_dir!r} does not exist") from exc
    log.info("%s eligible files: %s", len(eligible), [remote.name for remote in eligible])
    return ListedReports(tuple(eligible)), names


def tidy_after_listing(store: VisitsStore, settings: VisitsSettings, names: list[str]) -> None:
    """Close the loads whose source is gone and purge stale staging directories (not in a dry run)."""
    reconciled = store.reconcile_deleted_sources(names)
    if reconciled:
        log.info("%s loads whose source is gone were closed", reconciled)
    purged = files.purge_old_staging(Path(settings.staging_dir))
    log.info("%s stale staging dirs purged", purged)


def load_reports(
    open_sftp: Callable[[], AbstractContextManager],
    open_store: Callable[[], AbstractContextManager[VisitsStore]],
    settings: VisitsSettings,
    run: RunInfo,
    listed: ListedReports,
    give_up_files: Any,
    outcomes: list[RunMetrics],
) -> None:
    """The listed files one after another in ascending ``<n>`` (``process_in_order``); the param
    ``give_up_files`` sets files aside unloaded. ``outcomes`` gets each file's, on failure too."""
    give_up = parse_give_up(give_up_files, settings)
    if not listed.files and not give_up:
        return
    with alert_context(reference_date=str(run.reference_date)), open_store() as store:
        check_give_up(give_up, listed.files, store)
        if listed.files:
            with open_sftp() as sftp:
                processor = ReportProcessor(sftp, store, settings, run)
                process_in_order(processor, listed.files, outcomes, give_up)


@dataclass(frozen=True)
class RunSummary:
    metrics: dict[str, Any]  # summarize's XCom: the run's totals and files_listed
    statuses: dict[str, int]  # load_log rows of this run by status
    failure: str | None  # why the run fails, or None

    def asset_extra(self) -> dict[str, Any]:
        keys = ("rows_read", "rows_loaded", "rows_rejected", "files_listed")
        return {**{key: self.metrics[key] for key in keys}, "statuses": self.statuses}


def summarize(
    listed: ListedReports | None, outcomes: FileOutcomes, store: VisitsStore, run_id: str
) -> RunSummary:
    """The run's totals with every listed file's status (logged as ``ETL_METRICS``) and why the run
    fails: the listing failed (``listed`` None), or a listed file was not loaded."""
    statuses = store.run_status_counts(run_id)
    for load_id, name, status in store.stale_pending_loads():
        log.warning("load %s of %s has been %s for more than 24 h", load_id, name, status)
    files_status = outcomes.status_of(listed) if listed is not None else {}
    totals = RunMetrics("visits")
    for metrics in outcomes.files:
        totals.add(metrics)
    files_listed = len(listed.files) if listed is not None else 0
    summary = {**totals.log(statuses=statuses, files=files_status), "files_listed": files_listed}
    if listed is None:
        return RunSummary(summary, statuses, "listing the remote files failed: see list_remote_files")
    not_done = {name: status for name, status in files_status.items() if status in (None, *NOT_DONE)}
    failure = (
        f"{len(not_done)} files not loaded (FAILED: the file that failed; HELD_BACK: waits for it;"
        f" None: not reached, see process_files): {not_done}"
        if not_done
        else None
    )
    return RunSummary(summary, statuses, failure)
