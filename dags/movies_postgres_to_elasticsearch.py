"""Movies: PostgreSQL schema ``content`` → Elasticsearch alias ``movies`` (incremental, zero-downtime rebuilds)."""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from etlkit.common.assets import MOVIES_INDEX
from etlkit.common.dag_defaults import pipeline_default_args
from etlkit.movies.settings import MoviesSettings
from etlkit.operators.movies import (
    MoviesCommitStateOperator,
    MoviesPlanOperator,
    MoviesPublishOperator,
    MoviesReconcileOperator,
    MoviesSyncOperator,
)

SCHEDULE = os.environ.get("MOVIES_ETL_SCHEDULE", "* * * * *")
CONNECTIONS = {"pg_conn_id": "movies_postgres", "es_conn_id": "movies_elasticsearch"}

with DAG(
    dag_id="movies_postgres_to_elasticsearch",
    description="Keep the Elasticsearch movies index in step with the PostgreSQL film catalogue",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["movies", "elasticsearch", "postgres"],
    params=MoviesSettings.dag_params(),
    doc_md=__doc__
    + """

`plan` → `sync` → `publish` → `commit_state` → `reconcile`. Incremental by default (changes since the
stored high-water mark, Variable `movies_etl_state`); full mode builds `movies_<UTC timestamp>` and moves the
alias in one `_aliases` request. An empty Param keeps the configured value (env `MOVIES_ETL_<NAME>`, else
the default). See docs/movies.md.
""",
    default_args={
        **pipeline_default_args("movies", retries=5, retry_delay_s=30, max_retry_delay_s=600),  # spec §8
        "execution_timeout": timedelta(minutes=10),
    },
) as dag:
    plan = MoviesPlanOperator(task_id="plan", **CONNECTIONS)
    sync = MoviesSyncOperator(
        task_id="sync", plan=plan.output, execution_timeout=timedelta(minutes=120), **CONNECTIONS
    )
    publish = MoviesPublishOperator(task_id="publish", plan=plan.output, synced=sync.output, **CONNECTIONS)
    commit_state = MoviesCommitStateOperator(
        task_id="commit_state", plan=plan.output, synced=sync.output, outlets=[MOVIES_INDEX], **CONNECTIONS
    )
    reconcile = MoviesReconcileOperator(
        task_id="reconcile",
        plan=plan.output,
        synced=sync.output,
        committed=commit_state.output,
        execution_timeout=timedelta(minutes=120),
        **CONNECTIONS,
    )

    plan >> sync >> publish >> commit_state >> reconcile
