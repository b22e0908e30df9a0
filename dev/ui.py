"""``make ui``: the Airflow UI on this machine, to click through the project's DAGs.

Runs ``airflow standalone`` (API server, scheduler, dag-processor, triggerer; LocalExecutor on
SQLite) in an isolated AIRFLOW_HOME with the repo's ``dags/`` and ``plugins/``, bound to
127.0.0.1, with one admin login, and prints the URL and the login once the UI answers.
The home survives restarts (``--fresh`` wipes it), so the password stays the same.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from dev import pgdb
from dev.airflow_env import airflow_environment, connection_env
from dev.demo import DEMO_DB

SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
UI_USER = "admin"
DEFAULT_HOME = Path(tempfile.gettempdir()) / "etlkit-ui" / "airflow_home"
HEALTH_PATH = "/api/v2/monitor/health"


def auth_environment(home: Path, user: str, password: str) -> dict[str, str]:
    """SimpleAuthManager with one admin whose password is ours, written where the manager reads it."""
    home.mkdir(parents=True, exist_ok=True)
    passwords = home / "simple_auth_manager_passwords.json"
    passwords.write_text(json.dumps({user: password}) + "\n")
    passwords.chmod(0o600)
    return {
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        # Every component must sign and check tokens with the same secret.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
    }


def api_environment(port: int) -> dict[str, str]:
    """The API server on loopback only; task runners find the Execution API on the same port."""
    return {
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
    }


def wait_until_healthy(base_url: str, alive, timeout_s: float) -> bool:
    """Poll the health endpoint until it answers 200; False if ``alive()`` turns false or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        try:
            if httpx.get(base_url + HEALTH_PATH, timeout=5).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(1)
    return False


def stored_password(home: Path, user: str) -> str | None:
    passwords = home / "simple_auth_manager_passwords.json"
    if not passwords.exists():
        return None
    return json.loads(passwords.read_text()).get(user)


def demo_connections() -> dict[str, str]:
    """The demo's PostgreSQL target (``make demo`` fills it), so its tables can be browsed and queried."""
    return dict([connection_env("postgres_visits", pgdb.postgres_connection(DEMO_DB))])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("ETLKIT_UI_PORT", "8080")))
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="AIRFLOW_HOME (default: %(default)s)")
    parser.add_argument("--fresh", action="store_true", help="wipe the AIRFLOW_HOME first")
    args = parser.parse_args(argv)

    if args.fresh:
        shutil.rmtree(args.home, ignore_errors=True)
    password = (
        os.environ.get("ETLKIT_UI_PASSWORD")
        or stored_password(args.home, UI_USER)
        or secrets.token_urlsafe(12)
    )
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        **airflow_environment(args.home),
        **auth_environment(args.home, UI_USER, password),
        **api_environment(args.port),
        **demo_connections(),
        # `airflow standalone` starts its components as `airflow ...` found on PATH.
        "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")]),
    }
    url = f"http://127.0.0.1:{args.port}"
    print(f"AIRFLOW_HOME={args.home}\nstarting `airflow standalone` on {url} ...", flush=True)
    standalone = subprocess.Popen([str(Path(venv_bin) / "airflow"), "standalone"], env=env)
    try:
        if wait_until_healthy(url, lambda: standalone.poll() is None, timeout_s=600):
            print(
                f"\n  Airflow UI: {url}\n  login: {UI_USER} / {password}\n"
                f"  (password kept in {args.home}/simple_auth_manager_passwords.json; Ctrl+C stops)\n",
                flush=True,
            )
        return standalone.wait()
    except KeyboardInterrupt:
        # The terminal's Ctrl+C reached standalone too: it stops its components itself.
        return standalone.wait()


if __name__ == "__main__":
    sys.exit(main())
