"""Airflow plugin: the scheduler applies ``etl_retry_policy`` to the tries it closes itself.

A lost worker's try is failed by the scheduler, not by the task; see
``etlkit.common.retry.ClosedTryRetryListener``. Every Airflow component loads it from the plugins
folder; only the scheduler's own failures are acted on.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from etlkit.common.retry_policy import closed_try_retry_listener


class EtlkitRetryPolicyPlugin(AirflowPlugin):
    name = "etlkit_retry_policy"
    listeners = [closed_try_retry_listener]
