"""Persistence of component and job metrics in PostgreSQL (tables created if missing)."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from etlkit.common.sql import load_sql
from etlkit.jobs.metrics import ComponentSummary
from etlkit.jobs.validation import SOURCE_TYPES, WRITER_TYPES


def ensure_tables(connection) -> None:
    with connection.transaction():
        connection.execute(load_sql("jobs", "metrics_tables.sql"))


def upsert_component_run(
    connection, dag_id: str, run_id: str, environment: str | None, component: ComponentSummary
) -> None:
    summary = component.to_xcom()
    row = {
        **{
            k: summary.get(k)
            for k in ("component_id", "component_type", "try_number", "status", "started_at")
        },
        **{
            k: summary.get(k) for k in ("finished_at", "duration_s", "rows_dropped", "rows_rejected", "error")
        },
        "dag_id": dag_id,
        "run_id": run_id,
        "environment": environment,
        "rows_in": Jsonb(summary.get("rows_in") or {}),
        "rows_out": Jsonb(summary.get("rows_out") or {}),
        "reject_reasons": Jsonb(summary.get("reject_reasons") or {}),
        "details": Jsonb(summary.get("details") or {}),
    }
    with connection.transaction():
        connection.execute(load_sql("jobs", "upsert_component_run.sql"), row)


LOST_TRY_ERROR = "the task ended without recording a result (killed, out of memory or its worker lost)"


def close_lost_component_runs(connection, dag_id: str, run_id: str) -> list[tuple[str, int]]:
    """Mark the tries still ``running`` as failed; returns their (component_id, try_number)."""
    with connection.transaction():
        cursor = connection.execute(
            load_sql("jobs", "close_lost_component_runs.sql"),
            {"dag_id": dag_id, "run_id": run_id, "error": LOST_TRY_ERROR},
        )
        return [tuple(row) for row in cursor.fetchall()]


def latest_component_runs(connection, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    cursor = connection.execute(
        load_sql("jobs", "latest_component_runs.sql"), {"dag_id": dag_id, "run_id": run_id}
    )
    names = [d.name for d in cursor.description]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def job_totals(components: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Rows read by sources, written by writers, and rejected/dropped anywhere."""
    return {
        "rows_read": sum(
            c["rows_in"].get("source", 0) for c in components.values() if c["component_type"] in SOURCE_TYPES
        ),
        "rows_written": sum(
            c["rows_out"].get("target", 0) for c in components.values() if c["component_type"] in WRITER_TYPES
        ),
        "rows_rejected": sum(c["rows_rejected"] for c in components.values()),
        "rows_dropped": sum(c["rows_dropped"] for c in components.values()),
    }


def upsert_job_run(connection, row: dict[str, Any]) -> None:
    with connection.transaction():
        connection.execute(
            load_sql("jobs", "upsert_job_run.sql"), {**row, "connections": Jsonb(row["connections"])}
        )
