"""Thin operators of the Ender Turing → warehouse DAG: settings → hooks → one ``etlkit.enderturing.run``
step → metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator

from etlkit.common.alerting import alert_context
from etlkit.common.assets import ENDERTURING_WAREHOUSE, record_asset_event
from etlkit.common.lineage import DICTIONARY_PATHS, SESSION_PATHS, LineageReporting, enderturing_lineage
from etlkit.common.state import VariableWatermark
from etlkit.enderturing import load, run
from etlkit.enderturing.settings import EnderTuringSettings

PIPELINE = run.PIPELINE
CATEGORY_WATERMARK = "enderturing_categories_watermark"
# The hooks' default_conn_name (tested). The hook modules are imported in execute: the provider
# behind EtlPostgresHook costs ~0.4 s in every process that parses the DAG file.
ENDERTURING_DEFAULT_CONN_ID = "enderturing_default"
WAREHOUSE_DEFAULT_CONN_ID = "enderturing_warehouse"  # the warehouse connection the docs give


def warehouse(postgres_conn_id: str):
    """The warehouse's EtlPostgresHook, checked to be PostgreSQL before anything else runs."""
    from etlkit.hooks.postgres import EtlPostgresHook

    hook = EtlPostgresHook(postgres_conn_id, application_name="etlkit_enderturing")
    hook.require_postgres("the warehouse")
    return hook


def api(enderturing_conn_id: str):
    from etlkit.hooks.enderturing import EnderTuringHook

    return EnderTuringHook(enderturing_conn_id)


class _WarehouseOperator(BaseOperator):
    template_fields: Sequence[str] = ("postgres_conn_id", "schema")

    def __init__(
        self, *, postgres_conn_id: str = WAREHOUSE_DEFAULT_CONN_ID, schema: str = PIPELINE, **kwargs
    ):
        super().__init__(**kwargs)
        self.postgres_conn_id = postgres_conn_id
        self.schema = schema


class EnderTuringSchemaOperator(_WarehouseOperator):
    """Create or evolve the warehouse schema (idempotent, never drops)."""

    def execute(self, context: dict) -> None:
        with warehouse(self.postgres_conn_id).get_conn() as conn:
            load.ensure_schema(conn, self.schema)


class _ApiToWarehouseOperator(LineageReporting, _WarehouseOperator):
    template_fields: Sequence[str] = ("enderturing_conn_id", "postgres_conn_id", "schema")

    def __init__(self, *, enderturing_conn_id: str = ENDERTURING_DEFAULT_CONN_ID, **kwargs: Any):
        super().__init__(**kwargs)
        self.enderturing_conn_id = enderturing_conn_id

    def lineage(self, paths: list[str], tables: dict) -> Any:
        return enderturing_lineage(
            self.enderturing_conn_id, self.postgres_conn_id, self.schema, paths, tables
        )


class EnderTuringDictionariesOperator(_ApiToWarehouseOperator):
    """Fetch the seven dictionaries and load tables 1–12 in one transaction; returns a
    ``DictionaryRefresh`` (changed category ids, watermark candidate, counts per table)."""

    def execute(self, context: dict) -> dict:
        postgres = warehouse(self.postgres_conn_id)
        postgres.get_conn().close()  # an unreachable warehouse fails before the API is called
        category_watermark = VariableWatermark(CATEGORY_WATERMARK).read()  # read before any load
        refresh, metrics = run.refresh_dictionaries(
            api(self.enderturing_conn_id), postgres.get_conn, self.schema, category_watermark
        )
        metrics.log(task=self.task_id)
        self.note_lineage(self.lineage(DICTIONARY_PATHS, dict(refresh.tables)))
        return refresh.to_xcom()


class EnderTuringSyncSessionsOperator(_ApiToWarehouseOperator):
    """List the run's passes and windows, fetch per-session details and load tables 13–20 in ONE
    transaction, staging in a worker-local temp directory that is gone when the task ends.

    :param dictionaries: ``refresh_dictionaries``' XCom (``refresh_dictionaries.output``).
    :param settings_defaults: the DAG file's ``EnderTuringSettings`` values (below env, Variable, Params).
    :param detail_concurrency: overrides the connection's extra ``detail_concurrency``.
    """

    template_fields: Sequence[str] = (*_ApiToWarehouseOperator.template_fields, "dictionaries")

    def __init__(
        self,
        *,
        dictionaries: Any,
        settings_defaults: Mapping[str, Any] | None = None,
        et_timezone: str = "UTC",
        detail_concurrency: int | None = None,
        transform_workers: int = 2,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.dictionaries = dictionaries
        self.settings_defaults = dict(settings_defaults or {})
        self.et_timezone = et_timezone
        self.detail_concurrency = detail_concurrency
        self.transform_workers = transform_workers

    def execute(self, context: dict) -> dict:
        settings = EnderTuringSettings.resolve(context, defaults=self.settings_defaults)
        day = run.day_of_run(context, self.et_timezone)
        postgres = warehouse(self.postgres_conn_id)
        postgres.get_conn().close()
        hook = api(self.enderturing_conn_id)
        with alert_context(day=day.isoformat()):
            synced = run.sync_day(
                hook,
                postgres.get_conn,
                settings,
                day=day,
                run_type=run.run_type_of(context),
                dictionaries=run.DictionaryRefresh.from_xcom(self.dictionaries),
                detail_concurrency=self.detail_concurrency or hook.detail_concurrency,
                schema=self.schema,
                transform_workers=self.transform_workers,
            )
        synced.metrics().log(task=self.task_id, day=day.isoformat())
        summary = synced.summary()
        self.note_lineage(self.lineage(SESSION_PATHS, summary["tables"]))
        record_asset_event(
            context,
            ENDERTURING_WAREHOUSE,
            {"day": summary["day"], "sessions": summary["sessions"], "tables": summary["tables"]},
        )
        return summary


class EnderTuringCategoryWatermarkOperator(BaseOperator):
    """Advance the category watermark after the session load committed, for complete runs only."""

    template_fields: Sequence[str] = ("dictionaries",)

    def __init__(self, *, dictionaries: Any, settings_defaults: Mapping[str, Any] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.dictionaries = dictionaries
        self.settings_defaults = dict(settings_defaults or {})

    def execute(self, context: dict) -> str | None:
        settings = EnderTuringSettings.resolve(context, defaults=self.settings_defaults)
        refresh = run.DictionaryRefresh.from_xcom(self.dictionaries)
        candidate = run.watermark_to_store(settings, run.run_type_of(context), refresh)
        if candidate is not None:
            VariableWatermark(CATEGORY_WATERMARK).advance(candidate)
        return candidate
