"""Ender Turing → PostgreSQL warehouse (docs/enderturing.md). Wiring only; logic lives in etlkit."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor
from airflow.sdk import DAG, CronDataIntervalTimetable

from etlkit.common.assets import ENDERTURING_WAREHOUSE
from etlkit.common.dag_defaults import pipeline_default_args
from etlkit.common.notify import deadline_alert
from etlkit.enderturing.settings import EnderTuringSettings
from etlkit.operators.enderturing import (
    EnderTuringCategoryWatermarkOperator,
    EnderTuringDictionariesOperator,
    EnderTuringSchemaOperator,
    EnderTuringSyncSessionsOperator,
)

ENDERTURING_CONN_ID = "enderturing_default"
WAREHOUSE_CONN_ID = "enderturing_warehouse"
ET_CLOCK_TIMEZONE = "UTC"  # the tenant's clock (spec §6): days and windows follow it
# EnderTuringSettings for this DAG below env ETLKIT_ENDERTURING_*, Variable enderturing_settings and
# the run's Params (docs/enderturing.md, Settings); empty: the model's defaults.
SETTINGS_DEFAULTS: dict = {}

with DAG(
    dag_id="enderturing_to_warehouse",
    dag_display_name="Ender Turing → warehouse",
    description="Ender Turing dictionaries and the sessions of day D into PostgreSQL, idempotently",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone=ET_CLOCK_TIMEZONE),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,  # history is loaded with `airflow backfill create`
    max_active_runs=1,
    # Not finished N hours (etl_alerting deadline_hours, default 6) after its scheduled time, one
    # day after its logical date: alert.
    deadline=deadline_alert("enderturing_to_warehouse", schedule_lag=timedelta(days=1)),
    tags=["enderturing", "warehouse", "postgres"],
    doc_md=__doc__ + "\n\nSee docs/enderturing.md for connections, Variables, params and backfill.",
    default_args=pipeline_default_args("enderturing", retries=2),  # spec §6: 2 retries, exponential backoff
    # Trigger-form fields of EnderTuringSettings: empty (null) keeps the configured value.
    params=EnderTuringSettings.dag_params(),
) as dag:
    settle = TimeDeltaSensor(task_id="settle", delta=timedelta(minutes=5), deferrable=True)
    ensure_schema = EnderTuringSchemaOperator(task_id="ensure_schema", postgres_conn_id=WAREHOUSE_CONN_ID)
    refresh_dictionaries = EnderTuringDictionariesOperator(
        task_id="refresh_dictionaries",
        enderturing_conn_id=ENDERTURING_CONN_ID,
        postgres_conn_id=WAREHOUSE_CONN_ID,
    )
    # Extract and load in one task: its staging is worker-local and gone when the task ends.
    # One day at a time across ALL runs: Airflow counts a backfill's runs apart from the DAG's
    # max_active_runs (the backfill has its own, 10 by default), the scheduler enforces this one.
    sync_sessions = EnderTuringSyncSessionsOperator(
        task_id="sync_sessions",
        max_active_tis_per_dag=1,
        enderturing_conn_id=ENDERTURING_CONN_ID,
        postgres_conn_id=WAREHOUSE_CONN_ID,
        dictionaries=refresh_dictionaries.output,
        settings_defaults=SETTINGS_DEFAULTS,
        et_timezone=ET_CLOCK_TIMEZONE,
        outlets=[ENDERTURING_WAREHOUSE],
    )
    advance_category_watermark = EnderTuringCategoryWatermarkOperator(
        task_id="advance_category_watermark",
        dictionaries=refresh_dictionaries.output,
        settings_defaults=SETTINGS_DEFAULTS,
    )
    settle >> ensure_schema >> refresh_dictionaries >> sync_sessions >> advance_category_watermark
