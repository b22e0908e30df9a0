"""Thin operators of the Ender Turing → warehouse DAG; the work is in ``etlkit.enderturing``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from airflow.sdk import BaseOperator

from etlkit.common.alerting import alert_context
from etlkit.common.assets import ENDERTURING_WAREHOUSE, record_asset_event
from etlkit.common.lineage import DICTIONARY_PATHS, SESSION_PATHS, LineageReporting, enderturing_lineage
from etlkit.common.metrics import RunMetrics
from etlkit.common.state import VariableWatermark
from etlkit.enderturing import extract, load, staging, sync
from etlkit.enderturing.filters import plan_passes, resync_applies
from etlkit.enderturing.tables import DICTIONARY_TABLES
from etlkit.enderturing.transform import Transformer

log = logging.getLogger(__name__)

PIPELINE = "enderturing"
CATEGORY_WATERMARK = "enderturing_categories_watermark"


def warehouse_connection(postgres_conn_id: str):
    """A psycopg 3 connection to the warehouse; anything but PostgreSQL fails before ET is called."""
    from etlkit.hooks.postgres import EtlPostgresHook

    hook = EtlPostgresHook(postgres_conn_id, application_name="etlkit_enderturing")
    hook.require_postgres("the warehouse")
    return hook.get_conn()


def _run_type(context: dict) -> str:
    run_type = context["dag_run"].run_type
    return str(getattr(run_type, "value", run_type))


def _load_spooled(
    postgres_conn_id: str, schema: str, spool: staging.CopySpool, tables, lock_key: int
) -> dict:
    with warehouse_connection(postgres_conn_id) as conn:
        results = load.load_tables(conn, schema, tables, spool, lock_key)
    return {
        r.table: {"staged": r.staged, "inserted": r.inserted, "updated": r.updated, "orphans": r.orphans}
        for r in results
    }


class EnderTuringSchemaOperator(BaseOperator):
    """Create or evolve the warehouse schema (idempotent, never drops)."""

    template_fields: Sequence[str] = ("postgres_conn_id", "schema")

    def __init__(self, *, postgres_conn_id: str, schema: str = PIPELINE, **kwargs: Any):
        super().__init__(**kwargs)
        self.postgres_conn_id = postgres_conn_id
        self.schema = schema

    def execute(self, context: dict) -> None:
        with warehouse_connection(self.postgres_conn_id) as conn:
            load.ensure_schema(conn, self.schema)


class EnderTuringDictionariesOperator(LineageReporting, BaseOperator):
    """Fetch the seven dictionaries and load tables 1–12 in one transaction.

    Returns the changed category ids and the category watermark candidate (small XCom).
    """

    template_fields: Sequence[str] = ("enderturing_conn_id", "postgres_conn_id", "schema")

    def __init__(
        self, *, enderturing_conn_id: str, postgres_conn_id: str, schema: str = PIPELINE, **kwargs: Any
    ):
        super().__init__(**kwargs)
        self.enderturing_conn_id = enderturing_conn_id
        self.postgres_conn_id = postgres_conn_id
        self.schema = schema

    def execute(self, context: dict) -> dict:
        from etlkit.hooks.enderturing import EnderTuringHook

        warehouse_connection(self.postgres_conn_id).close()
        category_watermark = VariableWatermark(CATEGORY_WATERMARK).read()  # read before any load
        dictionaries = extract.fetch_dictionaries(EnderTuringHook(self.enderturing_conn_id))
        with staging.task_directory() as tmp:  # agents and users are personal data too
            with staging.CopySpool(tmp) as spool:
                transformer = Transformer(spool)
                extract.transform_dictionaries(dictionaries, transformer)
            tables = _load_spooled(
                self.postgres_conn_id, self.schema, [spool], DICTIONARY_TABLES, load.DICTIONARIES_LOCK_KEY
            )
        changed, candidate = extract.changed_categories(dictionaries["categories"], category_watermark)
        RunMetrics(
            PIPELINE,
            rows_read=sum(len(items) for items in dictionaries.values()),
            rows_loaded=sum(t["inserted"] + t["updated"] for t in tables.values()),
            extra={"warnings": dict(transformer.warnings)},
        ).log(task="refresh_dictionaries")
        self.note_lineage(
            enderturing_lineage(
                self.enderturing_conn_id, self.postgres_conn_id, self.schema, DICTIONARY_PATHS, tables
            )
        )
        context["ti"].xcom_push(key="changed_category_ids", value=changed)
        context["ti"].xcom_push(key="watermark_candidate", value=candidate)
        return {"changed_category_ids": changed, "watermark_candidate": candidate, "tables": tables}


class EnderTuringSyncSessionsOperator(LineageReporting, BaseOperator):
    """List the run's passes and windows, fetch per-session details and load tables 13–20 in ONE
    transaction, staging in a worker-local temp directory that is gone when the task ends."""

    template_fields: Sequence[str] = (
        "enderturing_conn_id",
        "postgres_conn_id",
        "schema",
        "changed_categories",
    )

    def __init__(
        self,
        *,
        enderturing_conn_id: str,
        postgres_conn_id: str,
        changed_categories: Any,
        schema: str = PIPELINE,
        et_timezone: str = "UTC",
        detail_concurrency: int | None = None,  # None: the connection's extra detail_concurrency
        transform_workers: int = 2,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.enderturing_conn_id = enderturing_conn_id
        self.postgres_conn_id = postgres_conn_id
        self.changed_categories = changed_categories
        self.schema = schema
        self.et_timezone = et_timezone
        self.detail_concurrency = detail_concurrency
        self.transform_workers = transform_workers

    def execute(self, context: dict) -> dict:
        from etlkit.hooks.enderturing import EnderTuringHook

        params = context["params"]
        day = day_of_run(context, self.et_timezone)
        warehouse_connection(self.postgres_conn_id).close()
        hook = EnderTuringHook(self.enderturing_conn_id)
        settings = extract.SessionSettings(
            page_size=int(params["page_size"]),
            window_cap=int(params["window_cap"]),
            limit_sessions=params["limit_sessions"],
            fetch_summaries=bool(params["fetch_summaries"]),
            fetch_comments=bool(params["fetch_comments"]),
            detail_concurrency=self.detail_concurrency or hook.detail_concurrency,
            max_detail_failures=int(params["max_detail_failures"]),
        )
        passes = plan_passes(
            day,
            resync=resync_applies(_run_type(context), bool(params["run_resync"])),
            lookback_days=int(params["resync_lookback_days"]),
            changed_category_ids=list(self.changed_categories or []),
        )
        with alert_context(day=day.isoformat()):
            result = sync.sync_sessions(
                hook,
                passes,
                settings,
                lambda: warehouse_connection(self.postgres_conn_id),
                self.schema,
                self.transform_workers,
            )
        report = result.report
        RunMetrics(
            PIPELINE,
            rows_read=report.sessions,
            rows_loaded=sum(t["inserted"] + t["updated"] for t in result.tables.values()),
            rows_rejected=report.detail_failures,
            extra={"passes": len(passes), "warnings": result.warnings},
        ).log(task="sync_sessions", day=day.isoformat())
        self.note_lineage(
            enderturing_lineage(
                self.enderturing_conn_id, self.postgres_conn_id, self.schema, SESSION_PATHS, result.tables
            )
        )
        record_asset_event(
            context,
            ENDERTURING_WAREHOUSE,
            {"day": day.isoformat(), "sessions": report.sessions, "tables": result.tables},
        )
        return {
            "day": day.isoformat(),
            "passes": [p.name for p in passes],
            "windows": report.windows,
            "sessions": report.sessions,
            "detail_calls": report.detail_calls,
            "detail_failures": report.detail_failures,
            "tables": result.tables,
            "warnings": result.warnings,
        }


def day_of_interval(data_interval_start: datetime, et_timezone: str) -> date:
    """D: the interval's first day on the ET clock (Airflow hands the interval over in UTC)."""
    return data_interval_start.astimezone(ZoneInfo(et_timezone)).date()


def day_of_run(context: dict, et_timezone: str) -> date:
    """D of this run. A run triggered without a logical date has no data interval in Airflow 3:
    it takes the last complete day before it was triggered, as a manual run with one does."""
    start = context.get("data_interval_start")
    if start is not None:
        return day_of_interval(start, et_timezone)
    return context["dag_run"].run_after.astimezone(ZoneInfo(et_timezone)).date() - timedelta(days=1)


class EnderTuringCategoryWatermarkOperator(BaseOperator):
    """Advance the category watermark after the session load committed, for complete runs only."""

    template_fields: Sequence[str] = ("watermark_candidate",)

    def __init__(self, *, watermark_candidate: str | None, **kwargs: Any):
        super().__init__(**kwargs)
        self.watermark_candidate = watermark_candidate

    def execute(self, context: dict) -> str | None:
        params = context["params"]
        run_type = _run_type(context)
        if not resync_applies(run_type, bool(params["run_resync"])) or params["limit_sessions"] is not None:
            log.info(
                "watermark left alone: run_type=%s run_resync=%s limit_sessions=%s",
                run_type,
                params["run_resync"],
                params["limit_sessions"],
            )
            return None
        if not self.watermark_candidate or self.watermark_candidate == "None":
            return None
        VariableWatermark(CATEGORY_WATERMARK).advance(self.watermark_candidate)
        return self.watermark_candidate
