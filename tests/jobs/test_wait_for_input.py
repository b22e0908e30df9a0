"""A scheduled job whose input file is not there yet waits for it (a reschedule-mode sensor before the
reader) and, after the declared timeout, fails naming the file."""

from __future__ import annotations

import copy
import json
import logging

import pytest

from dev import jobs_data
from etlkit.jobs.validation import JobDefinitionError, validate_job_text
from tests.conftest import REPO_ROOT, task_states
from tests.jobs.conftest import DAY, query
from tests.jobs.test_examples_e2e import LOGICAL_DATE

pytestmark = pytest.mark.jobs


def test_scheduled_examples_wait_for_their_dated_inputs_without_holding_a_worker(dag_bag):
    orders = dag_bag.get_dag("orders_daily_load")
    sensor = orders.get_task("_wait_read_orders")
    assert sensor.upstream_task_ids == {"_prepare"} and "read_orders" in sensor.downstream_task_ids
    assert (sensor.mode, sensor.timeout, sensor.poke_interval) == ("reschedule", 6 * 3600, 300)
    events = dag_bag.get_dag("app_events_ingest")
    assert {t.task_id for t in events.tasks if t.task_id.startswith("_wait_")} == {
        "_wait_read_web",
        "_wait_read_mobile",
    }
    assert not [t for t in dag_bag.get_dag("customer_revenue_daily").tasks if t.task_id.startswith("_wait_")]


def orders_dag(dag_bag, timeout: float, poke_interval: float):
    dag = copy.deepcopy(dag_bag.get_dag("orders_daily_load"))
    for task in dag.tasks:
        task.params = copy.deepcopy(task.params)
    sensor = dag.get_task("_wait_read_orders")
    sensor.timeout, sensor.poke_interval = timeout, poke_interval
    return dag


def tries(dag_run) -> dict[str, int]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: ti.try_number for ti in dag_run.get_task_instances(session=session)}


def test_an_export_placed_while_the_sensor_waits_is_loaded(jobs_env, dag_bag, monkeypatch):
    from etlkit.operators.job_sensors import WaitForInputSensor

    real_poke, pokes = WaitForInputSensor.poke, []

    def export_arrives_after_the_first_check(self, context):
        found = real_poke(self, context)
        pokes.append(found)
        if not found:
            jobs_data.write_orders_export(jobs_env["data_root"], DAY)
        return found

    monkeypatch.setattr(WaitForInputSensor, "poke", export_arrives_after_the_first_check)

    dag_run = orders_dag(dag_bag, timeout=600, poke_interval=1).test(logical_date=LOGICAL_DATE)

    assert dag_run.state == "success", task_states(dag_run)
    assert pokes == [False, True], "rescheduled once, then found"
    assert tries(dag_run)["read_orders"] == 1
    assert query(jobs_env["dsn"], "SELECT order_id FROM sales.orders ORDER BY 1") == [
        (1001,),
        (1003,),
        (1006,),
    ]


def test_an_export_missing_until_the_timeout_fails_the_run_naming_the_file(jobs_env, dag_bag, caplog):
    with caplog.at_level(logging.ERROR):
        dag_run = orders_dag(dag_bag, timeout=2, poke_interval=1).test(logical_date=LOGICAL_DATE)

    states = task_states(dag_run)
    assert dag_run.state == "failed"
    assert states["_wait_read_orders"] == "failed" and states["read_orders"] == "upstream_failed"
    assert tries(dag_run)["_wait_read_orders"] == 1, "a timeout is not retried"
    expected = jobs_env["data_root"] / "exports" / "orders_20250302.csv"
    assert f"read_orders: input file {expected} did not appear within 0:00:02" in caplog.text
    assert query(jobs_env["dsn"], "SELECT count(*) FROM sales.orders") == [(0,)]


@pytest.mark.parametrize(
    ("wait", "extra", "message"),
    [
        ({"timeout": "5m", "poke_interval": "1h"}, {}, "poke_interval must not exceed timeout"),
        ({"timeout": "6 hours"}, {}, "String should match pattern"),
        ({"timeout": "1h"}, {"missing_file": "empty"}, "wait_for_input needs missing_file: fail"),
    ],
)
def test_wait_for_input_settings_are_validated(tmp_path, wait, extra, message):
    job = json.loads((REPO_ROOT / "dags" / "jobs" / "orders_daily_load.json").read_text())
    job["components"][0]["config"].update({"wait_for_input": wait, **extra})
    with pytest.raises(JobDefinitionError, match=message):
        validate_job_text(json.dumps(job), tmp_path / "orders_daily_load.json")
