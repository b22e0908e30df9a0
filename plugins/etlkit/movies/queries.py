"""Change-column resolution (§1) and composition of the SQL templates in ``include/sql/movies``.

Identifiers are quoted by psycopg; values (bounds, id arrays) stay bind parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from etlkit.common.errors import ConfigurationError
from etlkit.common.sql import load_sql

if TYPE_CHECKING:
    from psycopg import sql

log = logging.getLogger(__name__)

PIPELINE = "movies"
ENTITY_TABLES = ("film_work", "genre", "person")
LINK_TABLES = ("genre_film_work", "person_film_work")
SOURCE_TABLES = ENTITY_TABLES + LINK_TABLES


def resolve_change_columns(
    columns: Iterable[tuple[str, str]], modified_column: str, created_column: str
) -> dict[str, str]:
    """``{table: change column}`` from ``(table, column)`` pairs of ``information_schema.columns``.

    Entity tables need the modified column; link tables fall back to the created column (convention A).
    """
    by_table: dict[str, set[str]] = {table: set() for table in SOURCE_TABLES}
    for table, column in columns:
        if table in by_table:
            by_table[table].add(column)
    resolved: dict[str, str] = {}
    for table in SOURCE_TABLES:
        present = by_table[table]
        if not present:
            raise ConfigurationError(f"source table {table!r} is missing")
        if modified_column in present:
            resolved[table] = modified_column
        elif table in LINK_TABLES and created_column in present:
            log.info(
                "%s has no %r column: using %r as its change column", table, modified_column, created_column
            )
            resolved[table] = created_column
        elif table in LINK_TABLES:
            raise ConfigurationError(
                f"table {table!r} has neither change column {modified_column!r} nor {created_column!r}"
            )
        else:
            raise ConfigurationError(f"table {table!r} has no change column {modified_column!r}")
    return resolved


def columns_query() -> str:
    return load_sql(PIPELINE, "columns.sql")


def _identifiers(schema: str, change_columns: Mapping[str, str]) -> dict[str, sql.Identifier]:
    from psycopg import sql  # imported on use: psycopg is slow to import and DAG parsing must stay fast

    identifiers = {"schema": sql.Identifier(schema)}
    for table in SOURCE_TABLES:
        identifiers[f"{table}_change"] = sql.Identifier(change_columns[table])
    return identifiers


def _compose(name: str, identifiers: Mapping[str, sql.Composable]) -> sql.Composed:
    from psycopg import sql

    return sql.SQL(load_sql(PIPELINE, name)).format(**identifiers)


def payload_query(schema: str, change_columns: Mapping[str, str], candidates: str) -> sql.Composed:
    """The payload query over ``candidates``: ``all`` (full mode), ``incremental`` (param ``lower``)
    or ``ids`` (param ``ids``, a list of uuids)."""
    if candidates not in {"all", "incremental", "ids"}:
        raise ValueError(f"unknown candidate selection {candidates!r}")
    identifiers = _identifiers(schema, change_columns)
    selection = _compose(f"candidates_{candidates}.sql", identifiers)
    return _compose("payload.sql", {**identifiers, "candidates": selection})


def film_ids_query(schema: str) -> sql.Composed:
    from psycopg import sql

    return _compose("film_ids.sql", {"schema": sql.Identifier(schema)})
