"""An isolated Airflow home: environment, metadata DB and connections given as env vars."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def airflow_environment(home: Path) -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO"),
        "AIRFLOW__SENTRY__SENTRY_ON": os.environ.get("AIRFLOW__SENTRY__SENTRY_ON", "False"),
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT / "plugins"), str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p
        ),
    }


def connection_env(conn_id: str, connection: dict) -> tuple[str, str]:
    return f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection)


def variable_env(key: str, value: object) -> tuple[str, str]:
    text = value if isinstance(value, str) else json.dumps(value)
    return f"AIRFLOW_VAR_{key.upper()}", text


def migrate_metadata_db(env: dict[str, str]) -> None:
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run(
        [str(airflow), "db", "migrate"],
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )
