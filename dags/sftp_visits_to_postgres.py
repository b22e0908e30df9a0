"""SFTP visit reports → PostgreSQL (spec: shared/specs/sftp-visits.md; docs: docs/visits.md)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, CronTriggerTimetable, Param

from etlkit.common.assets import VISITS
from etlkit.common.dag_defaults import RUN_TYPES_WITHOUT_BACKFILL, pipeline_default_args
from etlkit.common.notify import deadline_alert
from etlkit.common.retry_policy import retry_default_args
from etlkit.operators.visits import (
    EnsureVisitsSchemaOperator,
    ListVisitReportsOperator,
    LoadVisitReportsOperator,
    RefreshVisitorPeriodOperator,
    SummarizeVisitLoadsOperator,
)
from etlkit.visits.run import FILE_OUTCOMES_KEY
from etlkit.visits.settings import VisitsSchedule, VisitsSettings

# Env SFTP_VISITS_SCHEDULE / SFTP_VISITS_TZ where this file is parsed (no Variable: no I/O at parse).
WHEN = VisitsSchedule.resolve()

DOC = """
### SFTP visit reports → PostgreSQL

Once a day takes `report_<n>.txt` files from the SFTP directory of connection `sftp_visits`,
validates every line, loads each file in **one transaction** into `statistics` (valid rows),
`errors` (invalid rows with line, raw line, rule and message) and `visitor` (metrics recomputed
from `statistics`), then zips the original into the backup directory and deletes it at the source.
A load-control log (`load_log`, view `load_log_monthly`) makes every file load at most once.

* Connections: `sftp_visits` (host key pinned in the extra `host_key`), `postgres_visits`.
* Variable `sftp_visits_config` (JSON): directories, pattern, table names, batch size (see docs/visits.md).
* Params: `reference_date` (R for the visit counters, `YYYY-MM-DD`), `file_pattern` (narrows the Variable's pattern), `dry_run`,
  `give_up_files` (`{"report_7.txt": "why"}`: a file that holds back the later ones is set aside unloaded).
"""

with DAG(
    dag_id="sftp_visits_to_postgres",
    description="Daily SFTP visit reports to PostgreSQL with load control, archive and quarantine",
    doc_md=DOC,
    schedule=CronTriggerTimetable(WHEN.schedule, timezone=WHEN.tz, interval=timedelta(days=1)),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    # Not finished N hours (etl_alerting deadline_hours, default 6) after its scheduled time, one
    # day after its logical date: alert.
    deadline=deadline_alert("sftp_visits_to_postgres", schedule_lag=timedelta(days=1)),
    allowed_run_types=RUN_TYPES_WITHOUT_BACKFILL,  # each run takes what the source holds now
    tags=["visits", "sftp", "postgres"],
    params={
        **VisitsSettings.dag_params(),
        # Run-only: narrows the Variable's file_pattern for this run (a file must match both), so it is
        # not that setting; the Variable's pattern stays what a report file is.
        "file_pattern": Param(
            None,
            type=["null", "string"],
            description="Regex narrowing this run to some of the files the Variable's pattern admits",
        ),
        # Run-only: an action on this run's files, never a setting (kept in the Variable it would also
        # give up a later, corrected delivery of the same name).
        "give_up_files": Param(
            {},
            type="object",
            additionalProperties={"type": "string", "minLength": 1},
            description="{file name: reason}: files not to load (quarantined, GIVEN_UP with the reason"
            " in load_log), so the files held back behind them load",
        ),
    },
    default_args={
        **pipeline_default_args("visits"),
        "sftp_conn_id": "sftp_visits",
        "postgres_conn_id": "postgres_visits",
    },
) as dag:
    ensure_schema = EnsureVisitsSchemaOperator(task_id="ensure_schema")
    refresh_counters = RefreshVisitorPeriodOperator(task_id="refresh_period_counters")
    list_files = ListVisitReportsOperator(task_id="list_remote_files")
    # One task, files in ascending <n>: mapped instances would run in any order.
    process_files = LoadVisitReportsOperator(
        task_id="process_files",
        remote_files=list_files.output,
        **retry_default_args("visits", retries=2, retry_delay_s=300),
    )
    summarize = SummarizeVisitLoadsOperator(
        task_id="summarize",
        listed=list_files.output,
        outcomes=process_files.output[FILE_OUTCOMES_KEY],
        trigger_rule="all_done",
        retries=0,
        outlets=[VISITS],
    )
    ensure_schema >> refresh_counters >> list_files >> process_files >> summarize
