"""Sierra → Signum backend item sync (spec: docs/sierra.md)."""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from etlkit.common.assets import SIGNUM_ITEMS
from etlkit.common.dag_defaults import RUN_TYPES_WITHOUT_BACKFILL, pipeline_default_args
from etlkit.operators.sierra import SierraSignumSyncOperator
from etlkit.sierra.budget import PARSE_TIME_SOURCES, check_execution_timeout, parse_time_settings
from etlkit.sierra.settings import SierraSettings

# A deploy-time setting read at parse time from the environment, not a Variable (no metadata-DB
# read while parsing).
SYNC_INTERVAL = timedelta(seconds=int(os.environ.get("SIERRA_SYNC_INTERVAL_SECONDS", "60")))
# The spec's optional pool (`sierra_db`, 1 slot), opt-in: Airflow never schedules a task whose pool
# does not exist, so naming it unconditionally would stall deployments that have not created it.
SIERRA_POOL = os.environ.get("SIERRA_SYNC_POOL") or None
# Must exceed one batch's worst case under the settings (150 min covers the defaults' 129 min).
# Checked here against the settings visible without I/O, and again by the task against the run's.
EXECUTION_TIMEOUT = timedelta(minutes=float(os.environ.get("SIERRA_SYNC_EXECUTION_TIMEOUT_MINUTES", "150")))
# This DAG file's SierraSettings values, below env, Variable and Params (none differ from the model's).
SETTINGS_DEFAULTS: dict = {}
check_execution_timeout(EXECUTION_TIMEOUT, parse_time_settings(SETTINGS_DEFAULTS), PARSE_TIME_SOURCES)

DOC = """
### Sierra → Signum backend item sync

Each run asks the backend (`GET /sync`) what it needs: in `SYNC_FULL` it posts item batches in
item-id order until the full copy is done (at most `max_batches_per_run` per run); in
`SYNC_CHANGES` it posts the items changed (or whose bib changed) since the backend's timestamp.
Rows are streamed from a read-only Sierra snapshot with `COPY` into a gzip TSV file and uploaded.

Connections `sierra_dna` (postgres) and `signum_backend` (http, API key as password); tunables in
Variable `sierra_sync_settings` (or env `SIERRA_SYNC_<SETTING>`); interval from
`SIERRA_SYNC_INTERVAL_SECONDS`; pool (e.g. `sierra_db`) from `SIERRA_SYNC_POOL`, default pool when
unset. See `docs/sierra.md`.
"""

with DAG(
    dag_id="sierra_signum_item_sync",
    dag_display_name="Sierra → Signum backend item sync",
    schedule=SYNC_INTERVAL,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    allowed_run_types=RUN_TYPES_WITHOUT_BACKFILL,  # each run takes what the source holds now
    tags=["sierra", "signum"],
    doc_md=DOC,
    default_args=pipeline_default_args("sierra"),
    # max_batches (overrides max_batches_per_run) and dry_run_dir; empty keeps the configured value.
    params=SierraSettings.dag_params(),
) as dag:
    SierraSignumSyncOperator(
        task_id="sync_items",
        sierra_conn_id="sierra_dna",
        backend_conn_id="signum_backend",
        settings_defaults=SETTINGS_DEFAULTS,
        execution_timeout=EXECUTION_TIMEOUT,
        pool=SIERRA_POOL,
        # Transient faults are retried inside the task, per operation; the next tick is the outer retry.
        retries=0,
        outlets=[SIGNUM_ITEMS],
    )
