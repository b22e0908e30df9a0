"""Headless Chromium driven by Playwright, shared by the browser tests (``tests/ui``, ``tests/stack``).

The system browser (Debian's ``chromium``, or ``$CHROMIUM_PATH``) is launched through
``executable_path``: no ``playwright install``. Tests that need it skip only when Chromium or
Playwright is not installed (``make system`` and requirements-dev.txt install them).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

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
VIEWPORT = {"width": 1400, "height": 1000}


def chromium_executable() -> str | None:
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> str:
    """The browser's path; skips the calling test when Playwright or Chromium is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (requirements-dev.txt)")
    path = chromium_executable()
    if path is None:
        pytest.skip("chromium is not installed (make system: apt-get install chromium)")
    return path


@contextmanager
def chromium(path: str) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def new_page(browser) -> Iterator:
    """A page in its own context (no cookies shared with other tests), the UI's dates in UTC."""
    context = browser.new_context(viewport=VIEWPORT, timezone_id="UTC")
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def submit_login(page, url: str, user: str, password: str) -> None:
    """Fill and submit the SimpleAuthManager login form (the UI redirects there from any page)."""
    page.goto(url + "/")
    page.wait_for_url("**/auth/login**")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def sign_in(page, url: str, user: str, password: str) -> None:
    """Log in and wait until the UI has left the login page."""
    submit_login(page, url, user, password)
    page.wait_for_url(lambda current: "/auth/login" not in current)
