"""Thin operators of the SFTP visits DAG: settings and hooks in ``execute``, the work in ``etlkit.visits.run``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from etlkit.common.assets import VISITS, record_asset_event
from etlkit.common.lineage import LineageReporting, visits_lineage
from etlkit.common.metrics import RunMetrics
from etlkit.hooks.postgres import EtlPostgresHook
from etlkit.hooks.sftp import VerifiedSFTPHook
from etlkit.visits import run as visits
from etlkit.visits.process import RunInfo, open_store
from etlkit.visits.run import FILE_OUTCOMES_KEY, FileOutcomes, ListedReports
from etlkit.visits.settings import VisitsSchedule, VisitsSettings
from etlkit.visits.store import VisitsStore

POSTGRES_CONN_ID = "postgres_visits"


class VisitsOperator(BaseOperator):
    """Resolves ``VisitsSettings`` (Variable ``sftp_visits_config``, env, the run's params) and R
    per execution, never cached on the operator: the Variable may change between runs."""

    template_fields: Sequence[str] = ("postgres_conn_id",)
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        postgres_conn_id: str = POSTGRES_CONN_ID,
        settings_defaults: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.postgres_conn_id = postgres_conn_id
        self.settings_defaults = settings_defaults or {}

    def execute(self, context) -> Any:
        settings = VisitsSettings.resolve(context, defaults=self.settings_defaults)
        timezone = VisitsSchedule.resolve().tz
        r = visits.reference_date(settings.reference_date, context["dag_run"].run_after, timezone)
        run = RunInfo(context["dag"].dag_id, context["run_id"], r, settings.dry_run)
        return self.run(context, settings, run, timezone)

    def run(self, context, settings: VisitsSettings, run: RunInfo, timezone: str) -> Any:
        raise NotImplementedError

    @contextmanager
    def store(self, settings: VisitsSettings, timezone: str) -> Iterator[VisitsStore]:
        hook = EtlPostgresHook(self.postgres_conn_id, application_name="etlkit_visits")
        with hook.get_conn() as conn:
            yield open_store(conn, settings, timezone)


class SftpVisitsOperator(VisitsOperator):
    template_fields: Sequence[str] = (*VisitsOperator.template_fields, "sftp_conn_id")

    def __init__(self, *, sftp_conn_id: str = VerifiedSFTPHook.default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.sftp_conn_id = sftp_conn_id

    def sftp(self):
        return VerifiedSFTPHook(self.sftp_conn_id).verified_client()


class EnsureVisitsSchemaOperator(VisitsOperator):
    def run(self, context, settings, run, timezone) -> None:
        with self.store(settings, timezone) as store:
            store.ensure_schema()


class RefreshVisitorPeriodOperator(VisitsOperator):
    """Brings every visitor's year and month counters to R, even on a run with no files."""

    def run(self, context, settings, run, timezone) -> int:
        return visits.refresh_period_counters(lambda: self.store(settings, timezone), run)


class ListVisitReportsOperator(SftpVisitsOperator):
    """Eligible report files, oldest ``<n>`` first (``ListedReports``); also reconciles finished
    loads and purges staging. The run-only param ``file_pattern`` narrows the configured pattern."""

    def run(self, context, settings, run, timezone) -> list[dict[str, Any]]:
        with self.sftp() as sftp:
            listed, names = visits.list_reports(sftp, settings, context["params"].get("file_pattern"))
        if run.dry_run:
            self.log.info("dry run: no reconcile, no purge")
        else:
            with self.store(settings, timezone) as store:
                visits.tidy_after_listing(store, settings, names)
        return listed.to_xcom()


class LoadVisitReportsOperator(LineageReporting, SftpVisitsOperator):
    """The listed files one after another in ascending ``<n>`` (``visits.load_reports``). Its output is
    the XCom ``file_outcomes`` (``FileOutcomes``), pushed on failure too, so ``summarize`` reports
    the failed and held-back files; ``multiple_outputs`` makes ``.output["file_outcomes"]`` None
    instead of an error when this task never ran (an upstream task failed)."""

    template_fields: Sequence[str] = (*SftpVisitsOperator.template_fields, "remote_files")

    def __init__(self, *, remote_files: list[dict[str, Any]] | Any, **kwargs: Any):
        super().__init__(multiple_outputs=True, **kwargs)
        self.remote_files = remote_files

    def run(self, context, settings, run, timezone) -> None:
        outcomes: list[RunMetrics] = []
        try:
            visits.load_reports(
                self.sftp,
                lambda: self.store(settings, timezone),
                settings,
                run,
                ListedReports.from_xcom(self.remote_files or []),
                context["params"].get("give_up_files"),
                outcomes,
            )
        finally:
            published = FileOutcomes(tuple(outcomes)).to_xcom()
            context["ti"].xcom_push(key=FILE_OUTCOMES_KEY, value=published)
            conn_ids = {"sftp_conn_id": self.sftp_conn_id, "postgres_conn_id": self.postgres_conn_id}
            self.note_lineage(visits_lineage(settings, published, **conn_ids))


class SummarizeVisitLoadsOperator(VisitsOperator):
    """Logs the run's outcome and fails the run when any file failed (``trigger_rule=all_done``):
    ``listed`` is list_remote_files' output, ``outcomes`` process_files' ``file_outcomes`` (None
    when the task did not run)."""

    template_fields: Sequence[str] = (*VisitsOperator.template_fields, "listed", "outcomes")

    def __init__(self, *, listed: Any, outcomes: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.listed = listed
        self.outcomes = outcomes

    def run(self, context, settings, run, timezone) -> dict[str, Any]:
        listed = ListedReports.from_xcom(self.listed) if self.listed is not None else None
        with self.store(settings, timezone) as store:
            summary = visits.summarize(listed, FileOutcomes.from_xcom(self.outcomes), store, run.run_id)
        if summary.failure:
            raise AirflowFailException(summary.failure)
        record_asset_event(context, VISITS, summary.asset_extra())
        return summary.metrics
