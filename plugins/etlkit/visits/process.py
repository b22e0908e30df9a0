"""One report file from the SFTP server to PostgreSQL, archive and source deletion (spec §6).

Airflow-free: works with any paramiko-like SFTP client (``stat``, ``open``, ``remove``,
``listdir_attr``) and a ``VisitsStore``. Every step is idempotent, so a crash anywhere and a
rerun give the state of one clean run (spec §6.3).
"""

from __future__ import annotations

import errno
import logging
import posixpath
import re
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from etlkit.common.alerting import alert_context
from etlkit.common.errors import BadInputError, ConfigurationError
from etlkit.common.metrics import RunMetrics
from etlkit.visits import files
from etlkit.visits.settings import VisitsSettings
from etlkit.visits.store import FinishedLoad, LoadRecord, VisitsStore
from etlkit.visits.validation import (
    LayoutError,
    Rejection,
    check_header,
    raw_line_for_errors,
    validate_record,
)

log = logging.getLogger(__name__)
REPORT_NUMBER = re.compile(r"(\d+)")
HELD_BACK = "HELD_BACK"  # not handled: an earlier file failed and must load first
# PostgreSQL's context of a refused COPY row: 'COPY statistics, line 2: "<the row>"' or, for one value,
# 'COPY statistics, line 2, column email: "<the value>"'.
_COPY_CONTEXT = re.compile(r'COPY (\w+), line (\d+)(?:, column (\w+))?(?::\s*"(.*))?', re.DOTALL)
_QUOTED = re.compile(r':?\s*"[^"]*"')
NOT_DONE = ("FAILED", HELD_BACK)


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    mtime: int

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> RemoteFile:
        return cls(name=value["name"], size=int(value["size"]), mtime=int(value["mtime"]))

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "mtime": self.mtime}


@dataclass(frozen=True)
class RunInfo:
    dag_id: str
    run_id: str
    reference_date: date
    dry_run: bool = False

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.run_id)

    def as_load_fields(self) -> dict[str, Any]:
        return {"dag_id": self.dag_id, "dag_run_id": self.run_id, "reference_date": self.reference_date}


@dataclass
class LoadCounts:
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    visits_loaded: int = 0
    statistics: list[tuple] = field(default_factory=list)
    errors: list[tuple] = field(default_factory=list)


class DryRunRollback(Exception):
    """Raised inside the load transaction of a dry run so that nothing is committed."""


def report_sort_key(name: str) -> tuple[int, str]:
    match = REPORT_NUMBER.search(name)
    return (int(match.group(1)) if match else -1, name)


def list_eligible(sftp, config: VisitsSettings, file_pattern: str | None = None, now: float | None = None):
    """Regular files directly in the directory, old enough, ascending ``<n>``, matching the configured
    pattern and, when given, a run's ``file_pattern`` too (it narrows a run, never widens it)."""
    patterns = [re.compile(config.file_pattern)]
    if file_pattern:
        try:
            patterns.append(re.compile(file_pattern))
        except re.error as exc:
            raise ConfigurationError(f"param file_pattern={file_pattern!r} is not a regex: {exc}") from exc
    now = time.time() if now is None else now
    eligible, waiting, all_names = [], [], []
    for entry in sftp.listdir_attr(config.remote_dir):
        all_names.append(entry.filename)
        if not stat.S_ISREG(entry.st_mode or 0) or not all(p.match(entry.filename) for p in patterns):
            continue
        if now - (entry.st_mtime or 0) < config.min_file_age_s:
            waiting.append(entry.filename)
            continue
        eligible.append(RemoteFile(entry.filename, entry.st_size, entry.st_mtime))
    if waiting:
        log.info("files younger than %ss wait for the next run: %s", config.min_file_age_s, waiting)
    eligible.sort(key=lambda f: report_sort_key(f.name))
    return eligible, all_names


class ReportProcessor:
    def __init__(self, sftp, store: VisitsStore, config: VisitsSettings, run: RunInfo):
        self.sftp = sftp
        self.store = store
        self.config = config
        self.run = run
        self.tz = ZoneInfo(store.timezone)

    @property
    def staging_dir(self) -> Path:
        return Path(self.config.staging_dir) / self.run.slug

    def remote_path(self, name: str) -> str:
        return posixpath.join(self.config.remote_dir, name)

    def process(self, remote: RemoteFile) -> RunMetrics:
        metrics = RunMetrics("visits", extra={"file": remote.name})
        downloaded = self._download(remote, metrics)
        if downloaded is None:
            return metrics
        remote, staged, file_fields = downloaded
        try:
            record = self.store.find_once_only(remote.name, staged.sha256)
            if record is None:
                record = self._load(staged, file_fields, metrics)
            if record is None or self.run.dry_run:
                return metrics
            self._finish(record, remote, staged, file_fields, metrics)
        finally:
            staged.path.unlink(missing_ok=True)
        return metrics

    def give_up(self, remote: RemoteFile, reason: str) -> RunMetrics:
        """Set the file aside unloaded, on an operator's word (param ``give_up_files``): a byte-identical
        copy in quarantine, a ``GIVEN_UP`` row with the reason, removed at the source; the files after
        it then load. Bytes that are already loaded are not given up (that would not unload them)."""
        metrics = RunMetrics("visits", extra={"file": remote.name})
        if self.run.dry_run:
            log.info("dry run: %s would be given up: %s", remote.name, reason)
            metrics.extra["status"] = "DRY_RUN"
            return metrics
        downloaded = self._download(remote, metrics)
        if downloaded is None:
            return metrics
        remote, staged, file_fields = downloaded
        try:
            loaded = self.store.find_once_only(remote.name, staged.sha256)
            if loaded is not None:
                log.warning(
                    "%s: these bytes were loaded by load %s (%s): not given up, handled as loaded",
                    remote.name,
                    loaded.load_id,
                    loaded.status,
                )
                self._finish(loaded, remote, staged, file_fields, metrics)
                return metrics
            record = self.store.give_up(file=file_fields, run=self.run.as_load_fields(), reason=reason)
            log.warning("%s given up (load %s), not loaded: %s", remote.name, record.load_id, reason)
            self._set_aside(record, remote, staged, metrics)
        finally:
            staged.path.unlink(missing_ok=True)
        return metrics

    def _download(self, remote: RemoteFile, metrics: RunMetrics):
        """``(remote as it is now, staged copy, load_log file fields)``, or None when it is gone."""
        current = self._stat(remote.name)
        if current is None:
            closed = 0 if self.run.dry_run else self.store.close_loads_of_gone_file(remote.name)
            log.info("%s is gone from the server (%s archived loads closed)", remote.name, closed)
            metrics.extra["status"] = "GONE"
            return None
        remote = RemoteFile(remote.name, current.st_size, current.st_mtime)
        with self.sftp.open(self.remote_path(remote.name), "rb") as source:
            source.prefetch()
            staged = files.stream_to_staging(source, self.staging_dir / remote.name, remote.size)
        metrics.bytes_read = staged.size
        file_fields = {
            "file_name": remote.name,
            "file_size": staged.size,
            "sha256": staged.sha256,
            "remote_mtime": datetime.fromtimestamp(remote.mtime, UTC),
            "started_at": datetime.now(UTC),
        }
        return remote, staged, file_fields

    # -- steps ---------------------------------------------------------------------------

    def _stat(self, name: str):
        try:
            return self.sftp.stat(self.remote_path(name))
        except OSError as exc:
            if getattr(exc, "errno", None) == errno.ENOENT or isinstance(exc, FileNotFoundError):
                return None
            raise

    def _load(self, staged: files.StagedFile, file_fields: dict, metrics: RunMetrics) -> LoadRecord | None:
        name = file_fields["file_name"]
        if self.store.name_seen_with_other_checksum(name, staged.sha256):
            log.warning("%s was loaded before with other content: loading it as a new file", name)
        try:
            return self._load_transaction(staged, file_fields, metrics)
        except DryRunRollback:
            log.info("dry run: %s parsed and validated, nothing committed", name)
            metrics.extra["status"] = "DRY_RUN"
            return None
        except Exception as exc:
            refused = refused_row(exc, name)
            self.store.record_failure(file=file_fields, run=self.run.as_load_fields(), error=refused or exc)
            if refused is not None:
                raise refused from None  # psycopg's text quotes the row: personal data
            raise

    def _load_transaction(self, staged: files.StagedFile, file_fields: dict, metrics: RunMetrics):
        name = file_fields["file_name"]
        with self.store.locked_transaction():
            existing = self.store.find_once_only(name, staged.sha256)
            if existing is not None:
                log.info("%s was handled by another execution meanwhile (load %s)", name, existing.load_id)
                return existing
            load_id = self.store.insert_load(status="LOADED", file=file_fields, run=self.run.as_load_fields())
            lines = files.iter_lines(staged.path, staged.encoding, self.config.max_line_chars)
            first = next(lines, None)
            try:
                column2 = check_header(first[1] if first else None)
            except LayoutError as layout:
                return self._reject(load_id, name, first, layout.rejection, staged.encoding)
            counts = self._load_records(load_id, name, lines)
            out_of_order = self.store.count_out_of_order_visitors(load_id)
            if out_of_order:
                log.warning("%s: %s e-mails have a visit older than their first visit", name, out_of_order)
            visitors = self.store.upsert_visitors(load_id, self.run.reference_date)
            committed_at = self.store.mark_loaded(
                load_id,
                {
                    "rows_read": counts.rows_read,
                    "rows_loaded": counts.rows_loaded,
                    "rows_rejected": counts.rows_rejected,
                    "visits_loaded": counts.visits_loaded,
                    "encoding": staged.encoding,
                    "column2_header": column2,
                },
            )
            metrics.rows_read, metrics.rows_loaded = counts.rows_read, counts.rows_loaded
            metrics.rows_rejected = counts.rows_rejected
            metrics.extra.update(
                visits_loaded=counts.visits_loaded,
                visitors_upserted=visitors,
                encoding=staged.encoding,
                load_id=load_id,
            )
            if self.run.dry_run:
                raise DryRunRollback
        return LoadRecord(load_id, "LOADED", None, committed_at)

    def _reject(self, load_id, name, first, rejection: Rejection, encoding) -> LoadRecord:
        raw = raw_line_for_errors(first[1], self.config.max_line_chars) if first else ""
        self.store.copy_errors([(load_id, name, 1, raw, rejection.rule, rejection.message)])
        committed_at = self.store.mark_rejected(
            load_id, f"{rejection.rule}: {rejection.message}", encoding, None
        )
        log.warning("%s rejected: %s", name, rejection.message)
        if self.run.dry_run:
            raise DryRunRollback
        return LoadRecord(load_id, "REJECTED", None, committed_at)

    def _load_records(self, load_id: int, name: str, lines) -> LoadCounts:
        counts = LoadCounts()
        limit = self.config.max_line_chars
        with self.store.statistics_stream():
            self._validate_and_copy(load_id, name, lines, counts, limit)
        return counts

    def _validate_and_copy(self, load_id: int, name: str, lines, counts: LoadCounts, limit: int) -> None:
        for number, line in lines:
            counts.rows_read += 1
            result = validate_record(line, limit)
            if isinstance(result, Rejection):
                counts.errors.append(
                    (load_id, name, number, raw_line_for_errors(line, limit), result.rule, result.message)
                )
            else:
                counts.statistics.append((load_id, name, number, *result))
                counts.visits_loaded += result[5] is not None
            if len(counts.statistics) >= self.config.batch_rows:
                self._flush_statistics(counts)
            if len(counts.errors) >= self.config.batch_rows:
                self._flush_errors(counts)
        self._flush_statistics(counts)
        self._flush_errors(counts)

    def _flush_statistics(self, counts: LoadCounts) -> None:
        self.store.copy_statistics(counts.statistics)
        counts.rows_loaded += len(counts.statistics)
        counts.statistics.clear()

    def _flush_errors(self, counts: LoadCounts) -> None:
        """Errors are few: they wait for a batch of their own, so the statistics COPY stays open."""
        self.store.copy_errors(counts.errors)
        counts.rows_rejected += len(counts.errors)
        counts.errors.clear()

    def _finish(self, record: LoadRecord, remote: RemoteFile, staged, file_fields, metrics) -> None:
        """Archive or quarantine, delete at the source, close the load (steps 6-8 and Q)."""
        if record.status in ("COMPLETED", "QUARANTINED"):
            self._duplicate(record, remote, file_fields, metrics)
            return
        if record.status == "LOADED":
            stem, stamp = self._archive_stem(remote, record)
            target = Path(self.config.backup_dir) / f"{stem}_{stamp}.zip"
            files.write_verified_zip(staged.path, target, remote.name, staged.sha256)
            self._close(record, remote, target, metrics)
        else:
            self._set_aside(record, remote, staged, metrics)

    def _set_aside(self, record: LoadRecord, remote: RemoteFile, staged, metrics) -> None:
        """A byte-identical copy in quarantine (a rejected or given-up file), then close the load."""
        stem, stamp = self._archive_stem(remote, record)
        target = Path(self.config.quarantine_dir) / f"{stem}_{stamp}.txt"
        files.write_verified_copy(staged.path, target, staged.sha256)
        self._close(record, remote, target, metrics)

    def _archive_stem(self, remote: RemoteFile, record: LoadRecord) -> tuple[str, str]:
        return Path(remote.name).stem, record.committed_at.astimezone(self.tz).strftime("%Y%m%dT%H%M%S")

    def _close(self, record: LoadRecord, remote: RemoteFile, target: Path, metrics) -> None:
        self.store.mark_archived(record.load_id, target.name)
        if self._delete_at_source(remote):
            self.store.mark_source_deleted(record.load_id)
            metrics.extra["status"] = self.store.mark_finished(record.load_id)
        else:
            metrics.extra["status"] = record.status
        metrics.extra.update(load_id=record.load_id, archive=target.name)

    def _duplicate(self, record: LoadRecord, remote: RemoteFile, file_fields, metrics) -> None:
        log.warning("%s is a re-delivery of load %s: not loaded again", remote.name, record.load_id)
        load_id = self.store.insert_duplicate(
            file=file_fields,
            run=self.run.as_load_fields(),
            reason=f"same name and sha256 as load {record.load_id} ({record.status})",
        )
        if self._delete_at_source(remote):
            self.store.mark_source_deleted(load_id)
        self.store.mark_finished(load_id)
        metrics.extra.update(status="DUPLICATE", load_id=load_id, duplicate_of=record.load_id)

    def _delete_at_source(self, downloaded: RemoteFile) -> bool:
        """Remove the file unless it changed since the download; a missing file counts as removed."""
        current = self._stat(downloaded.name)
        if current is None:
            return True
        if (current.st_size, current.st_mtime) != (downloaded.size, downloaded.mtime):
            log.warning("%s changed on the server since the download: not deleted", downloaded.name)
            return False
        try:
            self.sftp.remove(self.remote_path(downloaded.name))
        except FileNotFoundError:
            pass
        return True


def refused_row(exc: BaseException, file_name: str) -> BadInputError | None:
    """A row PostgreSQL refused in a COPY (a value that does not fit, a constraint, a trigger), named
    by the file's line and the column, never by its content; None for any other error."""
    refused = isinstance(exc, (psycopg.DataError, psycopg.IntegrityError)) or (
        isinstance(exc, psycopg.Error) and (exc.sqlstate or "").startswith("P0")
    )
    place = _COPY_CONTEXT.search(exc.diag.context or "") if refused else None
    if place is None:
        return None
    table, copy_line, column, quoted = place.groups()
    fields = (quoted or "").split("\t") if not column else []
    # statistics and errors rows start with (load_id, source_file, line_number, ...).
    line = f"line {fields[2]}" if len(fields) > 2 and fields[2].isdigit() else f"COPY line {copy_line}"
    reason = _QUOTED.sub("", exc.diag.message_primary or type(exc).__name__)
    return BadInputError(
        f"PostgreSQL refused {line} of {file_name} in {table}{f' (column {column})' if column else ''}:"
        f" {reason} [SQLSTATE {exc.sqlstate}]; the row is not shown: personal data"
    )


def process_in_order(
    processor: ReportProcessor,
    remotes: Sequence[RemoteFile],
    outcomes: list[RunMetrics],
    give_up: Mapping[str, str] | None = None,
) -> None:
    """Handle ``remotes`` one after another in ascending ``<n>`` (spec §1): first visits depend on it.

    Each file is its own load (transaction and ``load_log`` row). Bad input is an outcome, not a
    failure: the file is quarantined with its reason and the run goes on. A file that fails stops
    the run there and the later files are held back, untouched, until it is loaded or given up on
    (``give_up``: ``{file name: reason}``, see ``ReportProcessor.give_up``): the retry (or the next
    run) starts again at it, taking the files this run already finished from ``load_log`` instead
    of downloading them again. ``outcomes`` gets one per-file entry as it goes, the failed and
    held-back files included, so the caller can publish them even on failure.
    """
    give_up = give_up or {}
    ordered = sorted(remotes, key=lambda remote: report_sort_key(remote.name))
    finished = {} if processor.run.dry_run else processor.store.finished_loads_of_run(processor.run.run_id)
    for index, remote in enumerate(ordered):
        with alert_context(file=remote.name):
            try:
                metrics = _already_finished(finished.get(remote.name), remote) or (
                    processor.give_up(remote, give_up[remote.name])
                    if remote.name in give_up
                    else processor.process(remote)
                )
            except Exception as exc:
                held_back = [later.name for later in ordered[index + 1 :]]
                outcomes.append(file_outcome(remote.name, "FAILED", error=type(exc).__name__))
                outcomes.extend(file_outcome(name, HELD_BACK, waits_for=remote.name) for name in held_back)
                if held_back:
                    log.warning(
                        "%s failed: %s later files wait for it: %s", remote.name, len(held_back), held_back
                    )
                raise
        metrics.log(dag_run_id=processor.run.run_id)
        outcomes.append(metrics)


def parse_give_up(value: Any, config: VisitsSettings) -> dict[str, str]:
    """The ``give_up_files`` param: ``{file name: reason}``, each a report name and a non-empty reason."""
    if value in (None, {}):
        return {}
    if not isinstance(value, dict):
        raise ConfigurationError(
            f"param give_up_files must be an object {{file name: reason}}, not {value!r}"
        )
    pattern = re.compile(config.file_pattern)
    give_up = {}
    for name, reason in value.items():
        if not pattern.match(name):
            raise ConfigurationError(f"param give_up_files: {name!r} is not a report file name")
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigurationError(f"param give_up_files: {name!r} needs a reason (a non-empty text)")
        give_up[name] = reason.strip()
    return give_up


def check_give_up(give_up: Mapping[str, str], remotes: Sequence[RemoteFile], store: VisitsStore) -> None:
    """Every file to give up is listed in this run, or was given up already (a rerun): else a typo."""
    unknown = set(give_up) - {remote.name for remote in remotes}
    unknown -= store.given_up_names(unknown) if unknown else set()
    if unknown:
        raise ConfigurationError(
            f"param give_up_files names {sorted(unknown)}: not among the files listed for this run"
            " (wrong name, younger than min_file_age_s, or outside file_pattern); nothing was done"
        )


def file_outcome(name: str, status: str, **details: Any) -> RunMetrics:
    return RunMetrics("visits", extra={"file": name, "status": status, **details})


def _already_finished(load: FinishedLoad | None, remote: RemoteFile) -> RunMetrics | None:
    """The metrics of a load this run finished on this very file (same size and mtime), if any."""
    if load is None or (load.file_size, load.remote_mtime) != (remote.size, remote.mtime):
        return None
    log.info("%s was finished by an earlier try of this run (load %s): skipped", remote.name, load.load_id)
    return RunMetrics(
        "visits",
        rows_read=load.rows_read,
        rows_loaded=load.rows_loaded,
        rows_rejected=load.rows_rejected,
        bytes_read=load.file_size,
        extra={
            "file": remote.name,
            "status": load.status,
            "load_id": load.load_id,
            "visits_loaded": load.visits_loaded,
            "archive": load.archive_name,
            "resumed": True,
        },
    )


def open_store(conn: psycopg.Connection, config: VisitsSettings, timezone: str) -> VisitsStore:
    conn.autocommit = True
    return VisitsStore(conn, config, timezone)
