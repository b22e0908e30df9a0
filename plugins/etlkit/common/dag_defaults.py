"""What every pipeline DAG starts from: ``default_args`` (owner, retry policy, failure alerts) and
the run types of a DAG that refuses backfills."""

from __future__ import annotations

from typing import Any

from etlkit.common.alerting import log_task_failure
from etlkit.common.retry_policy import retry_default_args

# For a DAG each of whose runs takes what the source holds now, whatever its interval: a backfill
# would only start that same run again for every day at once. Backfills are refused (REST 400, the
# CLI fails); schedules, manual triggers and TriggerDagRunOperator still start runs.
RUN_TYPES_WITHOUT_BACKFILL = ["scheduled", "manual", "operator_triggered"]


def pipeline_default_args(pipeline: str, owner: str = "data-eng", **retry_defaults: Any) -> dict[str, Any]:
    """``retry_defaults`` are ``RetrySettings`` fields (``retry_delay_s``, ``max_retry_delay_s``...):
    the retry policy decides the delay, so a DAG changes it here, not with ``retry_delay``."""
    return {
        **retry_default_args(pipeline, **retry_defaults),
        "owner": owner,
        "on_failure_callback": log_task_failure,
        "on_retry_callback": log_task_failure,
    }
