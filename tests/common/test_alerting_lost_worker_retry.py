"""A lost worker's try is retried under ``etl_retry_policy``, not the task's static delay.

The scheduler closes such a try itself (no exception reaches the task's retry policy) and Airflow
then waits ``retry_delay`` with backoff (300 s and more for the visits load), unless the try carries
a ``retry_delay_override``. The project's Airflow plugin sets that override in the scheduler from
the same settings the worker's policy uses. On the stack: tests/stack/test_faults.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

VISITS_DAG, LOAD_TASK = "sftp_visits_to_postgres", "process_files"


@pytest.fixture(scope="module")
def scheduler_task(dag_bag):
    """``process_files`` as the scheduler sees it: deserialized from the serialized DAG."""
    from airflow.serialization.serialized_objects import DagSerialization

    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag_bag.dags[VISITS_DAG]))
    return serialized.get_task(LOAD_TASK)


def closed_try(task, try_number: int = 1, state: str = "up_for_retry", override: float | None = None):
    return SimpleNamespace(task=task, state=state, try_number=try_number, retry_delay_override=override)


def test_the_scheduler_side_delay_follows_the_variable_with_backoff(scheduler_task):
    from etlkit.common.retry_policy import closed_try_retry

    assert scheduler_task.retry_delay == timedelta(seconds=300)  # the static delay Airflow would use
    overrides = {"retry_delay_s": 5, "max_retry_delay_s": 20}
    assert closed_try_retry(closed_try(scheduler_task, 1), overrides)[0] == 5
    assert closed_try_retry(closed_try(scheduler_task, 2), overrides)[0] == 10
    delay, reason = closed_try_retry(
        closed_try(scheduler_task, 1), {"pipelines": {"visits": {"retry_delay_s": 7}}}
    )
    assert delay == 7 and "worker" in reason and "try 1 of 3" in reason
    assert closed_try_retry(closed_try(scheduler_task, 1), {})[0] == 300  # no Variable: the code default


def test_the_policy_leaves_alone_what_it_does_not_decide(scheduler_task):
    from etlkit.common.retry_policy import closed_try_retry

    assert closed_try_retry(closed_try(scheduler_task, state="failed"), {}) is None
    assert closed_try_retry(closed_try(scheduler_task, override=12.0), {}) is None  # the worker decided
    summarize = scheduler_task.dag.get_task("summarize")  # retries=0
    assert closed_try_retry(closed_try(summarize), {}) is None


def test_the_plugin_sets_the_override_the_scheduler_reads(scheduler_task, airflow_var):
    from airflow.listeners.listener import get_listener_manager
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.state import TaskInstanceState

    airflow_var("etl_retry_policy", {"retry_delay_s": 5, "max_retry_delay_s": 20})
    ti = TaskInstance(scheduler_task, run_id="manual__lost", dag_version_id=None)
    ti.try_number, ti.state = 1, TaskInstanceState.UP_FOR_RETRY
    ti.end_date = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    # As TaskInstance.fetch_handle_failure_context calls it after setting the state, before saving,
    # with the scheduler's message (the try was running: its worker was lost).
    get_listener_manager().hook.on_task_instance_failed(
        previous_state=TaskInstanceState.RUNNING, task_instance=ti, error=executor_message("running")
    )
    assert ti.retry_delay_override == 5
    assert ti.next_retry_datetime() == ti.end_date + timedelta(seconds=5)
    assert "etl_retry_policy" in ti.retry_reason


def test_a_try_failed_while_queued_keeps_airflow_s_delay(scheduler_task, airflow_var):
    """Never on a worker (the broker was down): not a lost try, and the policy's seconds would burn
    every retry during an outage."""
    from airflow.listeners.listener import get_listener_manager
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.state import TaskInstanceState

    airflow_var("etl_retry_policy", {"retry_delay_s": 5, "max_retry_delay_s": 20})
    ti = TaskInstance(scheduler_task, run_id="manual__queued", dag_version_id=None)
    ti.try_number, ti.state = 1, TaskInstanceState.UP_FOR_RETRY
    get_listener_manager().hook.on_task_instance_failed(
        previous_state=TaskInstanceState.RUNNING, task_instance=ti, error=executor_message("queued")
    )
    assert ti.retry_delay_override is None


def executor_message(state: str) -> str:
    """The scheduler's message for a try the executor reported failed (3.3.2's wording)."""
    return (
        "Executor CeleryExecutor(parallelism=32) reported that the task instance <TaskInstance: "
        f"{VISITS_DAG}.{LOAD_TASK} manual__lost [{state}]> finished with state failed, but the task "
        f"instance's state attribute is {state}. Learn more: https://airflow.apache.org/docs/"
    )
