"""etlkit: hooks, operators and pipeline logic for the project's Airflow DAGs."""

from __future__ import annotations

import os
from pathlib import Path

__version__ = "0.1.0"

PROJECT_ROOT = Path(os.environ.get("ETLKIT_PROJECT_ROOT", Path(__file__).resolve().parents[2]))
SQL_DIR = PROJECT_ROOT / "include" / "sql"
