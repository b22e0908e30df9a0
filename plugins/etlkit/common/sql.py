"""SQL files under ``include/sql/<pipeline>/``."""

from __future__ import annotations

from functools import cache

from etlkit import SQL_DIR


@cache
def load_sql(pipeline: str, name: str) -> str:
    path = SQL_DIR / pipeline / name
    if not path.is_file():
        raise FileNotFoundError(f"SQL file {path} is missing")
    return path.read_text()
