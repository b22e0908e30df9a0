"""The Airflow API server with the project's DAGs, and headless Chromium driven by Playwright.

The browser tests skip only when Chromium or Playwright is not installed (``make system`` and
requirements-dev.txt install them). Screenshots go to ``test-output/ui/`` (or ``$UI_TEST_OUTPUT``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dev.sshd import free_port
from dev.ui import UI_USER, api_environment, auth_environment, wait_until_healthy
from tests.conftest import REPO_ROOT

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Explicit waits on a shared, busy machine: the first page load compiles the UI bundle.
UI_TIMEOUT_MS = 60_000


@dataclass(frozen=True)
class AirflowUI:
    url: str
    user: str
    password: str


def chromium_executable() -> str | None:
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (requirements-dev.txt)")
    path = chromium_executable()
    if path is None:
        pytest.skip("chromium is not installed (make system: apt-get install chromium)")
    return path


@pytest.fixture(scope="session")
def output_dir() -> Path:
    path = Path(os.environ.get("UI_TEST_OUTPUT", REPO_ROOT / "test-output" / "ui"))
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nUI screenshots: {path}")
    return path


def _airflow(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("airflow")), *args]


@pytest.fixture(scope="session")
def airflow_ui(chromium_path, airflow_db, session_tmp: Path) -> Iterator[AirflowUI]:
    """``airflow api-server`` on a free loopback port, the DAGs serialized into its metadata DB first."""
    home = Path(os.environ["AIRFLOW_HOME"])
    password = secrets.token_urlsafe(12)
    port = free_port()
    env = {**os.environ, **auth_environment(home, UI_USER, password), **api_environment(port)}
    log_path = session_tmp / "ui-api-server.log"
    with open(log_path, "wb") as log:
        # The API server only shows DAGs the metadata DB knows; the dag-processor would do this in a deployment.
        subprocess.run(
            _airflow("dags", "reserialize"), env=env, stdout=log, stderr=subprocess.STDOUT, check=True
        )
        server = subprocess.Popen(
            _airflow("api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_healthy(url, lambda: server.poll() is None, timeout_s=240):
            pytest.fail(f"the API server did not come up; its log:\n{log_path.read_text()[-4000:]}")
        yield AirflowUI(url=url, user=UI_USER, password=password)
    finally:
        _stop(server)


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (uvicorn and its worker), SIGKILL if it hangs."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


@pytest.fixture(scope="session")
def browser(chromium_path: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


def log_in(page, ui: AirflowUI, password: str | None = None) -> None:
    """Fill and submit the SimpleAuthManager login form (the UI redirects there from any page)."""
    page.goto(ui.url + "/")
    page.wait_for_url("**/auth/login**")
    page.get_by_label("Username").fill(ui.user)
    page.get_by_label("Password").fill(ui.password if password is None else password)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture
def signed_in_page(page, airflow_ui: AirflowUI):
    log_in(page, airflow_ui)
    page.wait_for_url(lambda url: "/auth/login" not in url)
    return page
