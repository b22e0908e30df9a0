"""The DAG's steps as plain functions: the operators build settings and hooks, call one of these and
log the metrics they return. No Airflow here: a run's context is read as a plain mapping."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import Connection

from etlkit.common.errors import BadInputError
from etlkit.common.metrics import RunMetrics
from etlkit.enderturing import extract, load, staging, sync
from etlkit.enderturing.filters import Pass, plan_passes, resync_applies
from etlkit.enderturing.settings import EnderTuringSettings
from etlkit.enderturing.tables import DICTIONARY_TABLES
from etlkit.enderturing.transform import Transformer

log = logging.getLogger(__name__)

PIPELINE = load.PIPELINE
Connect = Callable[[], Connection]


# ---- the run's day --------------------------------------------------------------------------


def day_of_interval(data_interval_start: datetime, et_timezone: str) -> date:
    """D: the interval's first day on the ET clock (Airflow hands the interval over in UTC)."""
    return data_interval_start.astimezone(ZoneInfo(et_timezone)).date()


def day_of_run(context: Mapping[str, Any], et_timezone: str) -> date:
    """D of this run. A run triggered without a logical date has no data interval in Airflow 3:
    it takes the last complete day before it was triggered, as a manual run with one does."""
    start = context.get("data_interval_start")
    if start is not None:
        return day_of_interval(start, et_timezone)
    return context["dag_run"].run_after.astimezone(ZoneInfo(et_timezone)).date() - timedelta(days=1)


def run_type_of(context: Mapping[str, Any]) -> str:
    run_type = context["dag_run"].run_type
    return str(getattr(run_type, "value", run_type))


# ---- refresh_dictionaries -------------------------------------------------------------------


@dataclass(frozen=True)
class DictionaryRefresh:
    """What ``refresh_dictionaries`` hands to the later tasks, as its XCom (``to_xcom``)."""

    changed_category_ids: tuple[int, ...]
    watermark_candidate: str | None  # the newest category updated_at seen; None without any
    tables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def to_xcom(self) -> dict[str, Any]:
        return {
            "changed_category_ids": list(self.changed_category_ids),
            "watermark_candidate": self.watermark_candidate,
            "tables": {name: dict(counts) for name, counts in self.tables.items()},
        }

    @classmethod
    def from_xcom(cls, value: Any) -> DictionaryRefresh:
        if isinstance(value, cls):
            return value
        try:
            ids = tuple(int(i) for i in value["changed_category_ids"])
            candidate = value["watermark_candidate"]
            if candidate is not None and not isinstance(candidate, str):
                raise TypeError("watermark_candidate is not text")
            return cls(ids, candidate, dict(value.get("tables") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInputError(
                f"refresh_dictionaries' XCom is not what it returns ({type(exc).__name__}: {exc}): "
                "clear refresh_dictionaries so that it runs again"
            ) from None


def loaded_rows(tables: Mapping[str, Mapping[str, Any]]) -> int:
    return sum(t["inserted"] + t["updated"] for t in tables.values())


def refresh_dictionaries(
    client: extract.Client, connect: Connect, schema: str, category_watermark: str | None
) -> tuple[DictionaryRefresh, RunMetrics]:
    """Fetch the seven dictionaries and load tables 1–12 in one transaction; the categories updated
    after ``category_watermark`` (read before this load) are the changed ones."""
    dictionaries = extract.fetch_dictionaries(client)
    with staging.task_directory() as tmp:  # agents and users are personal data too
        with staging.CopySpool(tmp) as spool:
            transformer = Transformer(spool)
            extract.transform_dictionaries(dictionaries, transformer)
        with connect() as conn:
            loads = load.load_tables(conn, schema, DICTIONARY_TABLES, [spool], load.DICTIONARIES_LOCK_KEY)
    tables = load.table_counts(loads)
    changed, candidate = extract.changed_categories(dictionaries["categories"], category_watermark)
    metrics = RunMetrics(
        PIPELINE,
        rows_read=sum(len(items) for items in dictionaries.values()),
        rows_loaded=loaded_rows(tables),
        extra={"warnings": dict(transformer.warnings)},
    )
    return DictionaryRefresh(tuple(changed), candidate, tables), metrics


# ---- sync_sessions --------------------------------------------------------------------------


@dataclass(frozen=True)
class DaySync:
    day: date
    passes: list[Pass]
    result: sync.SyncResult

    def summary(self) -> dict[str, Any]:
        """``sync_sessions``' XCom: counts per pass, window and table."""
        report = self.result.report
        return {
            "day": self.day.isoformat(),
            "passes": [p.name for p in self.passes],
            "windows": report.windows,
            "sessions": report.sessions,
            "detail_calls": report.detail_calls,
            "detail_failures": report.detail_failures,
            "tables": self.result.tables,
            "warnings": self.result.warnings,
        }

    def metrics(self) -> RunMetrics:
        report = self.result.report
        return RunMetrics(
            PIPELINE,
            rows_read=report.sessions,
            rows_loaded=loaded_rows(self.result.tables),
            rows_rejected=report.detail_failures,
            extra={"passes": len(self.passes), "warnings": self.result.warnings},
        )


def sync_day(
    client: extract.Client,
    connect: Connect,
    settings: EnderTuringSettings,
    *,
    day: date,
    run_type: str,
    dictionaries: DictionaryRefresh,
    detail_concurrency: int,
    schema: str = PIPELINE,
    transform_workers: int = 1,
) -> DaySync:
    """The passes of day D (re-sync passes for scheduled and manual runs), extracted and loaded."""
    passes = plan_passes(
        day,
        resync=resync_applies(run_type, settings.run_resync),
        lookback_days=settings.resync_lookback_days,
        changed_category_ids=list(dictionaries.changed_category_ids),
    )
    result = sync.sync_sessions(
        client, passes, settings, connect, schema, transform_workers, detail_concurrency=detail_concurrency
    )
    return DaySync(day, passes, result)


# ---- advance_category_watermark -------------------------------------------------------------


def watermark_to_store(
    settings: EnderTuringSettings, run_type: str, dictionaries: DictionaryRefresh
) -> str | None:
    """The category watermark a run may store: only complete runs (re-sync passes ran, no
    ``limit_sessions``) saw every changed category's sessions."""
    if not resync_applies(run_type, settings.run_resync) or settings.limit_sessions is not None:
        log.info(
            "watermark left alone: run_type=%s run_resync=%s limit_sessions=%s",
            run_type,
            settings.run_resync,
            settings.limit_sessions,
        )
        return None
    return dictionaries.watermark_candidate
