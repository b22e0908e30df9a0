"""The Airflow API server with the project's DAGs, and headless Chromium driven by Playwright
(``tests.browser``, shared with the stack's browser test).

The browser tests skip only when Chromium or Playwright is not installed (``make system`` and
requirements-dev.txt install them). Screenshots go to ``test-output/ui/`` (or ``$UI_TEST_OUTPUT``).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dev.sshd import free_port
from dev.ui import UI_USER, api_environment, auth_environment, wait_until_healthy
from tests.browser import chromium, new_page, require_chromium, sign_in, submit_login
from tests.conftest import REPO_ROOT


@dataclass(frozen=True)
class AirflowUI:
    url: str
    user: str
    password: str


@pytest.fixture(scope="session")
def chromium_path() -> str:
    return require_chromium()


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
    with chromium(chromium_path) as browser:
        yield browser


@pytest.fixture
def page(browser):
    with new_page(browser) as page:
        yield page


def log_in(page, ui: AirflowUI, password: str | None = None) -> None:
    """Submit the login form with the UI's user and its password (or the one given)."""
    submit_login(page, ui.url, ui.user, ui.password if password is None else password)


@pytest.fixture
def signed_in_page(page, airflow_ui: AirflowUI):
    sign_in(page, airflow_ui.url, airflow_ui.user, airflow_ui.password)
    return page
