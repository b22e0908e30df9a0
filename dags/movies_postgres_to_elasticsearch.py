"""Movies: PostgreSQL schema ``content`` → Elasticsearch alias ``movies`` (incremental, zero-downtime rebuilds)."""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param

from etlkit.common.assets import MOVIES_INDEX
from etlkit.common.dag_defaults import pipeline_default_args
from etlkit.movies.settings import default_settings
from etlkit.operators.movies import (
    MoviesCommitStateOperator,
    MoviesPlanOperator,
    MoviesPublishOperator,
    MoviesReconcileOperator,
    MoviesSyncOperator,
)

DEFAULTS = default_settings()  # MOVIES_ETL_<NAME> env overrides; no I/O
SCHEDULE = os.environ.get("MOVIES_ETL_SCHEDULE", "* * * * *")


def _param(name: str, kind: str, description: str, **schema) -> Param:
    return Param(getattr(DEFAULTS, name), type=kind, description=description, **schema)


PARAMS = {
    "full_refresh": _param("full_refresh", "boolean", "Rebuild into a new index and swap the alias"),
    "reconcile": _param("reconcile", "boolean", "Reconcile deletions and missing documents this run"),
    "pg_conn_id": _param("pg_conn_id", "string", "PostgreSQL connection id", minLength=1),
    "es_conn_id": _param("es_conn_id", "string", "Elasticsearch connection id", minLength=1),
    "pg_schema": _param("pg_schema", "string", "Source schema", minLength=1),
    "modified_column": _param(
        "modified_column", "string", "Change column (modified / updated_at)", minLength=1
    ),
    "created_column": _param(
        "created_column", "string", "Link-table fallback (created / created_at)", minLength=1
    ),
    "index_alias": _param("index_alias", "string", "Alias clients query", minLength=1),
    "batch_size": _param("batch_size", "integer", "Cursor fetch size and _search page size", minimum=1),
    "bulk_chunk_docs": _param("bulk_chunk_docs", "integer", "Max actions per _bulk request", minimum=1),
    "bulk_chunk_bytes": _param("bulk_chunk_bytes", "integer", "Max bytes per _bulk request", minimum=1),
    "overlap_seconds": _param("overlap_seconds", "integer", "Re-read window below the HWM", minimum=0),
    "max_reported_errors": _param("max_reported_errors", "integer", "Failed items shown", minimum=1),
    "reconcile_interval_minutes": _param(
        "reconcile_interval_minutes", "integer", "Reconcile every N minutes (0 = on demand)", minimum=0
    ),
    "full_refresh_interval_hours": _param(
        "full_refresh_interval_hours", "integer", "Full rebuild every N hours (0 = off)", minimum=0
    ),
    "keep_previous_index": _param("keep_previous_index", "boolean", "Keep the previous index for rollback"),
}

with DAG(
    dag_id="movies_postgres_to_elasticsearch",
    description="Keep the Elasticsearch movies index in step with the PostgreSQL film catalogue",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["movies", "elasticsearch", "postgres"],
    params=PARAMS,
    doc_md=__doc__
    + """

`plan` → `sync` → `publish` → `commit_state` → `reconcile`. Incremental by default (changes since the
stored high-water mark, Variable `movies_etl_state`); full mode builds `movies_<UTC timestamp>` and moves the
alias in one `_aliases` request. See docs/movies.md.
""",
    default_args={
        **pipeline_default_args("movies", retries=5, retry_delay_s=30, max_retry_delay_s=600),  # spec §8
        "execution_timeout": timedelta(minutes=10),
    },
) as dag:
    plan = MoviesPlanOperator(task_id="plan")
    sync = MoviesSyncOperator(task_id="sync", execution_timeout=timedelta(minutes=120))
    publish = MoviesPublishOperator(task_id="publish")
    commit_state = MoviesCommitStateOperator(task_id="commit_state", outlets=[MOVIES_INDEX])
    reconcile = MoviesReconcileOperator(task_id="reconcile", execution_timeout=timedelta(minutes=120))

    plan >> sync >> publish >> commit_state >> reconcile
