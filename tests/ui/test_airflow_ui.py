"""The Airflow UI in headless Chromium: login, every DAG with its tags and docs, a trigger form with params.

The expected DAGs, tags, docs and params come from the DagBag of ``dags/``, so the test follows
whatever DAGs the repo has.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.browser import UI_TIMEOUT_MS
from tests.ui.conftest import AirflowUI, log_in

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect
expect.set_options(timeout=UI_TIMEOUT_MS)

TRIGGER_FORM_DAG = "sftp_visits_to_postgres"
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
_WORD = re.compile(r"\w+")


def words(text: str) -> set[str]:
    """Words as a reader sees them: markdown emphasis underscores and link targets dropped."""
    return {w.strip("_") for w in _WORD.findall(_LINK_TARGET.sub("]", text))} - {""}


def doc_opening(doc_md: str, lines: int = 3) -> str:
    return "\n".join([line for line in doc_md.splitlines() if line.strip()][:lines])


def test_login_form_rejects_a_wrong_password_and_signs_in_with_the_right_one(
    page, airflow_ui: AirflowUI, output_dir: Path
):
    log_in(page, airflow_ui, password="not-" + airflow_ui.password)
    expect(page.get_by_text("Invalid credentials")).to_be_visible()
    assert "/auth/login" in page.url
    page.screenshot(path=output_dir / "login_rejected.png", animations="disabled")

    page.get_by_label("Password").fill(airflow_ui.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    expect(page.get_by_role("link", name="Dags", exact=True)).to_be_visible()


def test_every_dag_is_listed_with_its_tags(signed_in_page, airflow_ui: AirflowUI, dag_bag, output_dir: Path):
    page = signed_in_page
    dags = dag_bag.dags
    assert dags, "the DagBag found no DAGs"
    page.goto(airflow_ui.url + "/dags")
    expect(page.get_by_text(re.compile(rf"^{len(dags)} Dags?$"))).to_be_visible()
    page.screenshot(path=output_dir / "dags.png", full_page=True, animations="disabled")

    tags_behind_the_limit: dict[str, set[str]] = {}
    for dag_id, dag in sorted(dags.items()):
        title = page.locator(f'a[data-testid="dag-id"][href="/dags/{dag_id}"]')
        expect(title).to_have_text(dag.dag_display_name)
        card = page.get_by_test_id("dag-card").filter(has=title)
        shown = set(card.locator('a[href^="/dags?tags="]').all_inner_texts())
        assert shown <= set(dag.tags), f"{dag_id}: UI shows tags {shown}, the DAG has {set(dag.tags)}"
        if hidden := set(dag.tags) - shown:
            tags_behind_the_limit[dag_id] = hidden

    # A card shows a few tags and folds the rest: those must find the DAG through the tag filter.
    for dag_id, hidden in tags_behind_the_limit.items():
        for tag in sorted(hidden):
            page.goto(f"{airflow_ui.url}/dags?tags={quote(tag)}")
            expect(page.locator(f'a[data-testid="dag-id"][href="/dags/{dag_id}"]')).to_be_visible()


def test_every_dag_page_shows_its_docs(signed_in_page, airflow_ui: AirflowUI, dag_bag, output_dir: Path):
    page = signed_in_page
    for dag_id, dag in sorted(dag_bag.dags.items()):
        assert dag.doc_md, f"{dag_id} has no doc_md"
        page.goto(f"{airflow_ui.url}/dags/{dag_id}")
        page.get_by_role("button", name="Dag Docs").click()
        docs = page.get_by_role("dialog")
        expect(docs).to_contain_text("Dag Documentation")
        expected = words(doc_opening(dag.doc_md))
        # The markdown renders asynchronously: wait for the first word before comparing them all.
        expect(docs).to_contain_text(sorted(expected)[0])
        missing = expected - words(docs.inner_text())
        assert not missing, f"{dag_id}: the docs dialog lacks {sorted(missing)} of its doc_md opening"
        page.screenshot(path=output_dir / f"docs_{dag_id}.png", animations="disabled")
        page.keyboard.press("Escape")
        expect(docs).to_be_hidden()


def test_trigger_form_shows_the_dag_params(signed_in_page, airflow_ui: AirflowUI, dag_bag, output_dir: Path):
    page = signed_in_page
    params = dag_bag.dags[TRIGGER_FORM_DAG].params
    assert len(params) > 0
    page.goto(f"{airflow_ui.url}/dags/{TRIGGER_FORM_DAG}")
    page.get_by_role("button", name="Trigger Dag").click()
    form = page.get_by_role("dialog")
    expect(form).to_contain_text(f"Trigger Dag - {TRIGGER_FORM_DAG}")
    expect(form).to_contain_text("Run Parameters")
    for name in params:
        param = params.get_param(name)
        label = param.schema.get("title") or name
        # A required param's label ends with a "*".
        label_text = page.get_by_text(re.compile(rf"^\s*{re.escape(label)}\s*\*?\s*$"))
        field = form.get_by_role("group").filter(has=label_text)
        expect(field).to_have_count(1)
        expect(field.locator("input, textarea, select").first).to_be_attached()
        if param.description:
            expect(field).to_contain_text(param.description)
    page.screenshot(path=output_dir / f"trigger_{TRIGGER_FORM_DAG}.png", animations="disabled")
