"""Housekeeping of the declarative jobs; the job DAGs themselves come from ``dags/jobs/<name>.py`` loaders.

Each job has its own loader file so that Airflow, which records import errors per Python file,
flags only the broken job (see docs/jobs.md).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from etlkit.common.dag_defaults import pipeline_default_args
from etlkit.operators.jobs import StagingHousekeepingOperator

with DAG(
    dag_id="declarative_jobs_housekeeping",
    description="Remove staged outputs of declarative job runs older than staging.retention_days.",
    doc_md=__doc__,
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["declarative-job", "housekeeping"],
    default_args=pipeline_default_args("jobs"),
):
    StagingHousekeepingOperator(task_id="remove_stale_staging")
