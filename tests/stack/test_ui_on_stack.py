"""The Airflow UI of the Celery stack in headless Chromium, as an operator uses it: a run triggered
from the trigger form with a param changed, watched to success in the grid, and a backfill started
from the same dialog. REST API v2 then checks what the UI asked for reached Airflow.

Screenshots go to ``test-output/stack/ui/`` (``$STACK_TEST_OUTPUT/ui``).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from dev import pgdb
from dev.enderturing_server import generate_dataset
from dev.ui import UI_USER
from tests.browser import UI_TIMEOUT_MS, chromium, new_page, require_chromium, sign_in
from tests.stack.conftest import RUN_TIMEOUT_S, task_log

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect
expect.set_options(timeout=UI_TIMEOUT_MS)

TRIGGER_DAG = "sierra_signum_item_sync"
CHANGED_MAX_BATCHES = 1  # the param's default is None (the Variable's max_batches_per_run)
BACKFILL_DAG = "enderturing_to_warehouse"
# Days no other stack test loads: the Ender Turing API is given sessions for them here.
BACKFILL_DAYS = (date(2024, 2, 19), date(2024, 2, 20))
BACKFILL_SESSIONS_PER_DAY = 15
GRID_FINAL_STATES = {"Success", "Failed"}
POLL_S = 3


@pytest.fixture(scope="module")
def browser():
    with chromium(require_chromium()) as browser:
        yield browser


@pytest.fixture
def page(browser, stack) -> Iterator:
    with new_page(browser) as page:
        sign_in(page, stack.stack.url, UI_USER, stack.stack.password)
        yield page


@pytest.fixture(scope="module")
def shots(stack_output: Path) -> Path:
    path = stack_output / "ui"
    path.mkdir(parents=True, exist_ok=True)
    return path


def activity(stack, dag_id: str) -> str | None:
    """What keeps the DAG busy: not parsed yet, a run running (or queued, when unpaused), a backfill."""
    with stack.api() as api:
        dag = api.get(f"/dags/{dag_id}")
        if dag.status_code == 404:
            return "not parsed by the dag-processor yet"
        states = ["running"] if dag.raise_for_status().json()["is_paused"] else ["running", "queued"]
        runs = api.get(f"/dags/{dag_id}/dagRuns", params={"state": states}).raise_for_status().json()
        backfills = api.get("/backfills", params={"dag_id": dag_id}).raise_for_status().json()
    if runs["total_entries"]:
        return f"active runs {[r['dag_run_id'] for r in runs['dag_runs']]}"
    if active := [b["id"] for b in backfills["backfills"] if b["completed_at"] is None]:
        return f"backfills {active} in progress"
    return None


def wait_until_idle(stack, dag_id: str, timeout_s: float = RUN_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while busy := activity(stack, dag_id):
        assert time.monotonic() < deadline, f"{dag_id} still busy after {timeout_s} s: {busy}"
        time.sleep(POLL_S)


def trigger_dialog(page):
    """The trigger dialog itself (its date pickers are popovers that also have the dialog role)."""
    return page.locator('[role="dialog"][data-scope="dialog"][data-part="content"]')


def grid_run_state(page, base_url: str, dag_id: str, run_id: str) -> str:
    """The state the DAG's grid shows for the run: its bar's tooltip says ``State: <state>``."""
    page.goto(f"{base_url}/dags/{dag_id}")
    page.locator(f'a[href="/dags/{dag_id}/runs/{quote(run_id, safe="")}/"]').hover()
    tooltip = page.get_by_test_id("basic-tooltip").filter(has_text=f"Run ID: {run_id}")
    expect(tooltip).to_contain_text("State: ")
    return re.search(r"State: (\w+)", tooltip.inner_text()).group(1)


def watch_grid_until_finished(page, base_url: str, dag_id: str, run_id: str) -> str:
    """Reload the grid until the run's bar shows a final state (the grid stops polling on its own)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while (state := grid_run_state(page, base_url, dag_id, run_id)) not in GRID_FINAL_STATES:
        assert time.monotonic() < deadline, f"{run_id} still {state} in the grid after {RUN_TIMEOUT_S} s"
        time.sleep(POLL_S)
    return state


def test_a_run_triggered_from_the_form_with_a_changed_param_succeeds_in_the_grid(stack, page, shots: Path):
    url = stack.stack.url
    run_id = f"ui_trigger_{uuid.uuid4().hex[:8]}"
    wait_until_idle(stack, TRIGGER_DAG)

    page.goto(f"{url}/dags/{TRIGGER_DAG}")
    page.get_by_role("button", name="Trigger Dag").click()
    form = trigger_dialog(page)
    expect(form).to_contain_text("Run Parameters")
    form.locator('input[name="element_max_batches"]').fill(str(CHANGED_MAX_BATCHES))
    form.get_by_text("Advanced Options").click()
    form.locator('input[name="dagRunId"]').fill(run_id)
    page.screenshot(path=shots / f"trigger_form_{TRIGGER_DAG}.png", full_page=True, animations="disabled")
    form.get_by_role("button", name="Trigger", exact=True).click()
    page.wait_for_url(f"**/dags/{TRIGGER_DAG}/runs/{run_id}")

    assert watch_grid_until_finished(page, url, TRIGGER_DAG, run_id) == "Success"
    page.screenshot(path=shots / f"grid_{TRIGGER_DAG}_success.png", animations="disabled")

    run = stack.run(TRIGGER_DAG, run_id)
    assert (run["state"], run["run_type"], run["triggering_user_name"]) == ("success", "manual", UI_USER)
    assert run["conf"]["max_batches"] == CHANGED_MAX_BATCHES, run["conf"]
    # The task ran with the form's value, not the Variable's max_batches_per_run: its log says so.
    log = task_log(stack, TRIGGER_DAG, run_id, "sync_items", 1)
    assert any(f"max_batches_per_run={CHANGED_MAX_BATCHES} (the run's params)" in line for line in log), log


def give_enderturing_sessions_for(stack, days: tuple[date, ...]) -> dict[date, int]:
    """Sessions on the Ender Turing API for days only this test uses; returns each day's count."""
    dataset = stack.systems.enderturing.dataset
    if not any(s["start_dt"][:10] == str(days[0]) for s in dataset.sessions):
        extra = generate_dataset(list(days), BACKFILL_SESSIONS_PER_DAY, seed=1402)
        dataset.scores.update(extra.scores)
        dataset.summaries.update(extra.summaries)
        dataset.sessions.extend(extra.sessions)
    return {day: sum(1 for s in dataset.sessions if s["start_dt"][:10] == str(day)) for day in days}


def pick_datetime(page, field, day: date) -> None:
    """The dialog's date fields open a popover with a date and a time input (the UI's zone, UTC)."""
    field.click()
    picker = page.locator('[data-scope="popover"][data-part="content"][data-state="open"]')
    picker.get_by_placeholder("YYYY/MM/DD").fill(day.strftime("%Y/%m/%d"))
    picker.get_by_placeholder("HH:mm").fill("00:00")
    page.keyboard.press("Enter")


def sessions_loaded(stack, day: date) -> int:
    with psycopg.connect(pgdb.dsn(stack.layout.database("enderturing"))) as conn:
        query = "SELECT count(*) FROM enderturing.sessions WHERE start_dt::date = %s"
        return conn.execute(query, (day,)).fetchone()[0]


def wait_for_backfill(stack, backfill_id: int) -> dict:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        with stack.api() as api:
            backfill = api.get(f"/backfills/{backfill_id}").raise_for_status().json()
        if backfill["completed_at"] is not None:
            return backfill
        assert time.monotonic() < deadline, f"backfill {backfill_id} not completed after {RUN_TIMEOUT_S} s"
        time.sleep(POLL_S)


def test_a_backfill_started_from_the_trigger_dialog_runs_its_days(stack, page, shots: Path):
    url = stack.stack.url
    first, last = BACKFILL_DAYS
    expected = give_enderturing_sessions_for(stack, BACKFILL_DAYS)
    wait_until_idle(stack, BACKFILL_DAG)

    page.goto(f"{url}/dags/{BACKFILL_DAG}")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = trigger_dialog(page)
    dialog.get_by_text("Backfill", exact=True).click()
    expect(dialog).to_contain_text("Date Range")
    dates = dialog.get_by_test_id("datetime-input")
    for index, day in enumerate((first, last)):
        pick_datetime(page, dates.nth(index), day)
        dialog.get_by_text("Date Range").click()  # closes the popover, not the dialog
    # The dialog's dry run: one run per day of the range.
    expect(dialog).to_contain_text(f"{len(BACKFILL_DAYS)} runs will be triggered.")
    page.screenshot(path=shots / f"backfill_dialog_{BACKFILL_DAG}.png", animations="disabled")
    dialog.get_by_role("button", name="Run Backfill").click()
    expect(dialog).to_be_hidden()

    with stack.api() as api:
        backfills = api.get("/backfills", params={"dag_id": BACKFILL_DAG}).raise_for_status().json()
    ours = [
        b
        for b in backfills["backfills"]
        if (b["from_date"], b["to_date"]) == (f"{first}T00:00:00Z", f"{last}T00:00:00Z")
    ]
    assert len(ours) == 1, backfills
    backfill = wait_for_backfill(stack, ours[0]["id"])
    assert backfill["reprocess_behavior"] == "none"

    with stack.api() as api:
        runs = (
            api.get(
                f"/dags/{BACKFILL_DAG}/dagRuns",
                params={
                    "run_type": "backfill",
                    "logical_date_gte": f"{first}T00:00:00Z",
                    "logical_date_lte": f"{last}T00:00:00Z",
                },
            )
            .raise_for_status()
            .json()["dag_runs"]
        )
    assert sorted((r["logical_date"][:10], r["state"]) for r in runs) == [
        (str(day), "success") for day in BACKFILL_DAYS
    ], runs
    for day, count in expected.items():
        assert sessions_loaded(stack, day) == count > 0, day

    page.goto(f"{url}/dags/{BACKFILL_DAG}/backfills")
    row = page.get_by_role("row").filter(has=page.locator(f'time[datetime="{first}T00:00:00Z"]'))
    expect(row.get_by_test_id("table-cell-completed_at").locator("time")).to_be_visible()
    page.screenshot(path=shots / f"backfills_{BACKFILL_DAG}.png", animations="disabled")
