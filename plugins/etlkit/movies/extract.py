"""Streaming extraction from PostgreSQL: one REPEATABLE READ snapshot, one server-side cursor."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from etlkit.movies.change_keys import Snapshot
from etlkit.movies.transform import FilmRow, as_utc

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql


def _server_side_rows(
    conn: psycopg.Connection,
    query: sql.Composable,
    params: Mapping[str, Any],
    batch_size: int,
    name: str,
    snapshot: Snapshot | None = None,
) -> Iterator[tuple]:
    """Rows of ``query`` fetched ``batch_size`` at a time; only one batch is held in memory.

    With ``snapshot``, its ``taken_at`` is set to the database clock of the snapshot the rows come from.
    """
    import psycopg  # imported on use: slow to import, and DAG parsing must stay fast

    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.rollback()
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    with conn.transaction():
        conn.execute("SET LOCAL TIME ZONE 'UTC'")
        # JIT compilation costs about a second per query and buys nothing for this row-streaming plan.
        conn.execute("SET LOCAL jit = off")
        if snapshot is not None:
            # The first query of a REPEATABLE READ transaction takes its snapshot before it runs, so this
            # clock reading is no earlier than the snapshot: a row it shows with a later timestamp is dated
            # in the future. (now() is the earlier BEGIN time and would flag rows committed just after it.)
            snapshot.taken_at = as_utc(conn.execute("SELECT clock_timestamp()").fetchone()[0])
        with conn.cursor(name=name) as cursor:
            cursor.itersize = batch_size
            cursor.execute(query, params, binary=True)
            while batch := cursor.fetchmany(batch_size):
                yield from batch


def stream_film_rows(
    conn: psycopg.Connection,
    query: sql.Composable,
    params: Mapping[str, Any],
    batch_size: int,
    snapshot: Snapshot | None = None,
) -> Iterator[FilmRow]:
    for row in _server_side_rows(conn, query, params, batch_size, "movies_payload", snapshot):
        yield film_row(row)


def film_row(row: tuple) -> FilmRow:
    """A payload-query row (links as parallel arrays) as a ``FilmRow``."""
    film_id, title, description, rating, change_key, genre_ids, genre_names, *people = row
    person_ids, person_names, person_roles = people
    genres = list(zip(genre_ids, genre_names, strict=True)) if genre_ids else []
    persons = list(zip(person_ids, person_names, person_roles, strict=True)) if person_ids else []
    return FilmRow(film_id, title, description, rating, as_utc(change_key), genres, persons)


def stream_film_ids(conn: psycopg.Connection, query: sql.Composable, batch_size: int) -> Iterator[str]:
    for (film_id,) in _server_side_rows(conn, query, {}, batch_size, "movies_ids"):
        yield str(film_id)


def read_columns(
    conn: psycopg.Connection, query: str, schema: str, tables: list[str]
) -> list[tuple[str, str]]:
    with conn.cursor() as cursor:
        cursor.execute(query, {"schema": schema, "tables": tables})
        rows = cursor.fetchall()
    conn.rollback()
    return rows
