"""Thin operators of the SFTP visits DAG: build hooks in ``execute``, delegate to ``etlkit.visits``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from airflow.sdk import BaseOperator, Variable
from airflow.sdk.exceptions import AirflowFailException

from etlkit.common.alerting import alert_context
from etlkit.common.assets import VISITS, record_asset_event
from etlkit.common.errors import ConfigurationError
from etlkit.common.lineage import LineageReporting, visits_lineage
from etlkit.common.metrics import RunMetrics
from etlkit.hooks.postgres import EtlPostgresHook
from etlkit.hooks.sftp import VerifiedSFTPHook
from etlkit.visits import files
from etlkit.visits.config import CONFIG_VARIABLE, VisitsConfig, timezone_from_env
from etlkit.visits.process import (
    NOT_DONE,
    RemoteFile,
    ReportProcessor,
    RunInfo,
    check_give_up,
    list_eligible,
    open_store,
    parse_give_up,
    process_in_order,
)
from etlkit.visits.store import VisitsStore

log = logging.getLogger(__name__)
FILE_OUTCOMES_KEY = "file_outcomes"


class VisitsBaseOperator(BaseOperator):
    """Resolves the ``sftp_visits_config`` Variable and the run's params at execution time."""

    template_fields: Sequence[str] = ("sftp_conn_id", "postgres_conn_id")
    ui_color = "#e8f4ea"

    def __init__(self, *, sftp_conn_id: str | None = None, postgres_conn_id: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.sftp_conn_id = sftp_conn_id
        self.postgres_conn_id = postgres_conn_id

    def visits_config(self) -> VisitsConfig:
        values = Variable.get(CONFIG_VARIABLE, default=None, deserialize_json=True)
        return VisitsConfig.from_mapping(
            values,
            sftp_conn_id=self.sftp_conn_id,
            postgres_conn_id=self.postgres_conn_id,
            timezone=timezone_from_env(),
        )

    def execute(self, context):
        # Resolved per execution, never cached on the operator: the Variable may change between runs.
        return self.execute_with_config(context, self.visits_config())

    def execute_with_config(self, context, config: VisitsConfig):
        raise NotImplementedError

    @staticmethod
    def open_store(config: VisitsConfig) -> VisitsStore:
        conn = EtlPostgresHook(config.postgres_conn_id, application_name="etlkit_visits").get_conn()
        return open_store(conn, config)

    @staticmethod
    def run_info(context, config: VisitsConfig) -> RunInfo:
        params = context.get("params") or {}
        return RunInfo(
            dag_id=context["dag"].dag_id,
            run_id=context["run_id"],
            reference_date=reference_date(context, config.timezone),
            dry_run=bool(params.get("dry_run")),
        )


def reference_date(context, timezone: str) -> date:
    """R (spec §5.2): the ``reference_date`` param, else the date of the trigger time in ``timezone``.

    The trigger time is ``run_after`` for every kind of run. The logical date is not: with the
    DAG's one-day ``CronTriggerTimetable`` a scheduled run's logical date is the interval's start,
    the day before its trigger.
    """
    override = (context.get("params") or {}).get("reference_date")
    if override:
        try:
            return date.fromisoformat(override)
        except ValueError as exc:
            raise ConfigurationError(f"param reference_date={override!r} is not YYYY-MM-DD") from exc
    return context["dag_run"].run_after.astimezone(ZoneInfo(timezone)).date()


class EnsureVisitsSchemaOperator(VisitsBaseOperator):
    def execute_with_config(self, context, config) -> None:
        store = self.open_store(config)
        with store.conn:
            store.ensure_schema()


class RefreshVisitorPeriodOperator(VisitsBaseOperator):
    """Brings every visitor's year and month counters to R, even on a run with no files."""

    def execute_with_config(self, context, config) -> int:
        run = self.run_info(context, config)
        r = run.reference_date
        if run.dry_run:
            log.info("dry run: period counters for R=%s not refreshed", r)
            return 0
        store = self.open_store(config)
        with store.conn:
            changed = store.refresh_period_counters(r)
        log.info("period counters refreshed for R=%s: %s visitors changed", r, changed)
        return changed


class ListVisitReportsOperator(VisitsBaseOperator):
    """Eligible report files, oldest ``<n>`` first; also reconciles finished loads and purges staging."""

    def execute_with_config(self, context, config) -> list[dict[str, Any]]:
        pattern = (context.get("params") or {}).get("file_pattern") or None
        hook = VerifiedSFTPHook(ssh_conn_id=config.sftp_conn_id)
        with hook.verified_client() as sftp:
            try:
                eligible, names = list_eligible(sftp, config, pattern)
            except FileNotFoundError as exc:
                raise ConfigurationError(f"remote_dir {config.remote_dir!r} does not exist") from exc
        if self.run_info(context, config).dry_run:
            log.info("dry run: %s eligible files: %s (no reconcile, no purge)", len(eligible), eligible)
            return [remote.as_dict() for remote in eligible]
        store = self.open_store(config)
        with store.conn:
            reconciled = store.reconcile_deleted_sources(names)
        if reconciled:
            log.info("%s loads whose source is gone were closed", reconciled)
        purged = files.purge_old_staging(Path(config.staging_dir))
        log.info("%s eligible files: %s (%s stale staging dirs purged)", len(eligible), eligible, purged)
        return [remote.as_dict() for remote in eligible]


class LoadVisitReportsOperator(LineageReporting, VisitsBaseOperator):
    """The listed files one after another in ascending ``<n>``, each downloaded, checked, loaded in
    its own transaction, archived and deleted at the source; a failed file holds back the later
    ones until it loads or the param ``give_up_files`` gives it up with a reason
    (``process_in_order``). Per-file outcomes go to the XCom ``file_outcomes``, on failure too."""

    template_fields: Sequence[str] = (*VisitsBaseOperator.template_fields, "remote_files")

    def __init__(self, *, remote_files: list[dict[str, Any]] | Any, **kwargs):
        super().__init__(**kwargs)
        self.remote_files = remote_files

    def execute_with_config(self, context, config) -> None:
        remotes = [RemoteFile.from_dict(value) for value in self.remote_files or []]
        run = self.run_info(context, config)
        give_up = parse_give_up((context.get("params") or {}).get("give_up_files"), config)
        outcomes: list[dict[str, Any]] = []
        try:
            if remotes or give_up:
                self._process(config, run, remotes, give_up, outcomes)
        finally:
            context["ti"].xcom_push(key=FILE_OUTCOMES_KEY, value=outcomes)
            self.note_lineage(visits_lineage(config, outcomes))

    def _process(self, config, run: RunInfo, remotes: list[RemoteFile], give_up, outcomes: list) -> None:
        with alert_context(reference_date=str(run.reference_date)):
            hook = VerifiedSFTPHook(ssh_conn_id=config.sftp_conn_id)
            store = self.open_store(config)
            with store.conn:
                check_give_up(give_up, remotes, store)
                if not remotes:
                    return
                with hook.verified_client() as sftp:
                    process_in_order(ReportProcessor(sftp, store, config, run), remotes, outcomes, give_up)


class SummarizeVisitLoadsOperator(VisitsBaseOperator):
    """Logs the run's outcome and fails the run when any file failed (``trigger_rule=all_done``)."""

    template_fields: Sequence[str] = (*VisitsBaseOperator.template_fields, "list_task_id", "load_task_id")

    def __init__(self, *, list_task_id: str, load_task_id: str, **kwargs):
        super().__init__(**kwargs)
        self.list_task_id = list_task_id
        self.load_task_id = load_task_id

    def execute_with_config(self, context, config) -> dict[str, Any]:
        ti = context["ti"]
        listed = ti.xcom_pull(task_ids=self.list_task_id)
        outcomes = ti.xcom_pull(task_ids=self.load_task_id, key=FILE_OUTCOMES_KEY) or []
        by_file = {outcome["extra"]["file"]: outcome for outcome in outcomes}
        files_status = {
            f["name"]: by_file.get(f["name"], {}).get("extra", {}).get("status") for f in listed or []
        }
        totals = RunMetrics("visits")
        for outcome in outcomes:
            totals.add(RunMetrics(**outcome))
        store = self.open_store(config)
        with store.conn:
            statuses = store.run_status_counts(context["run_id"])
            stale = store.stale_pending_loads()
        for load_id, name, status in stale:
            log.warning("load %s of %s has been %s for more than 24 h", load_id, name, status)
        summary = {**totals.log(statuses=statuses, files=files_status), "files_listed": len(listed or [])}
        if listed is None:
            raise AirflowFailException("listing the remote files failed: see list_remote_files")
        not_done = {name: status for name, status in files_status.items() if status in (None, *NOT_DONE)}
        if not_done:
            raise AirflowFailException(
                f"{len(not_done)} files not loaded (FAILED: the file that failed; HELD_BACK: waits for it;"
                f" None: not reached, see process_files): {not_done}"
            )
        record_asset_event(context, VISITS, {**row_counts(summary), "statuses": statuses})
        return summary


def row_counts(summary: dict[str, Any]) -> dict[str, Any]:
    return {key: summary[key] for key in ("rows_read", "rows_loaded", "rows_rejected", "files_listed")}
