"""Both timestamp conventions against the real PostgreSQL, and the real sample dump when it is present."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

from dev import movies_data, pgdb
from etlkit.movies import queries
from etlkit.movies.extract import read_columns, stream_film_rows
from etlkit.movies.transform import build_document
from tests.conftest import SHARED_DATA, task_states
from tests.movies.conftest import es_connection, read_state, run_movies
from tests.movies.expected import expected_documents, indexed_documents

pytestmark = pytest.mark.movies

SAMPLE_DUMP = SHARED_DATA / "movies" / "movies_db_dump.sql"


def extract_documents(
    conn: psycopg.Connection, modified: str, created: str, batch_size: int = 7
) -> list[dict]:
    columns = read_columns(conn, queries.columns_query(), "content", list(queries.SOURCE_TABLES))
    change_columns = queries.resolve_change_columns(columns, modified, created)
    query = queries.payload_query("content", change_columns, "all")
    return [build_document(row) for row in stream_film_rows(conn, query, {}, batch_size)]


# (columns read in convention A, the same columns' names in convention B); link rows get updated_at = created.
CONVENTION_B_COPY = {
    "film_work": (
        ["id", "title", "description", "creation_date", "rating", "type", "created", "modified"],
        ["id", "title", "description", "creation_date", "rating", "type", "created_at", "updated_at"],
    ),
    "genre": (
        ["id", "name", "description", "created", "modified"],
        ["id", "name", "description", "created_at", "updated_at"],
    ),
    "person": (["id", "full_name", "created", "modified"], ["id", "full_name", "created_at", "updated_at"]),
    "genre_film_work": (
        ["id", "genre_id", "film_work_id", "created", "created"],
        ["id", "genre_id", "film_work_id", "created_at", "updated_at"],
    ),
    "person_film_work": (
        ["id", "film_work_id", "person_id", "role", "created", "created"],
        ["id", "film_work_id", "person_id", "role", "created_at", "updated_at"],
    ),
}


def copy_as_convention_b(source: psycopg.Connection, target: psycopg.Connection) -> None:
    for table, (read, write) in CONVENTION_B_COPY.items():
        rows = source.execute(
            sql.SQL("SELECT {} FROM content.{}").format(
                sql.SQL(", ").join(map(sql.Identifier, read)), sql.Identifier(table)
            )
        ).fetchall()
        with target.cursor() as cursor:
            cursor.executemany(
                sql.SQL("INSERT INTO content.{} ({}) VALUES ({})").format(
                    sql.Identifier(table),
                    sql.SQL(", ").join(map(sql.Identifier, write)),
                    sql.SQL(", ").join(sql.Placeholder() * len(write)),
                ),
                rows,
            )


def test_conventions_a_and_b_give_identical_documents(generated_source):
    other = pgdb.create_database("etl_movies_b")
    try:
        with psycopg.connect(pgdb.dsn(other), autocommit=True) as conn_b:
            movies_data.create_schema(conn_b, "B")
            copy_as_convention_b(generated_source, conn_b)
            documents_b = extract_documents(conn_b, "updated_at", "created_at")
        documents_a = extract_documents(generated_source, "modified", "created")
    finally:
        pgdb.drop_database(other)
    assert documents_a == documents_b
    assert sorted(d["id"] for d in documents_a) == sorted(expected_documents(generated_source))


def test_extraction_order_is_by_change_key_then_id(generated_source):
    columns = read_columns(generated_source, queries.columns_query(), "content", list(queries.SOURCE_TABLES))
    change_columns = queries.resolve_change_columns(columns, "modified", "created")
    query = queries.payload_query("content", change_columns, "all")
    keys = [(row.change_key, str(row.id)) for row in stream_film_rows(generated_source, query, {}, 5)]
    assert keys == sorted(keys) and len(keys) == 80


@pytest.mark.skipif(not SAMPLE_DUMP.is_file(), reason="sample dump not available in ../shared/data/movies")
def test_real_sample_dump_end_to_end(run_dag, airflow_conn, source_db, source_conn, es_server, clean_state):
    movies_data.create_schema(source_conn, "B")
    loaded = movies_data.load_data_dump(source_conn, SAMPLE_DUMP)
    assert loaded["content.film_work"] > 0
    airflow_conn("movies_postgres", pgdb.postgres_connection(source_db))
    airflow_conn("movies_elasticsearch", es_connection(es_server))

    dag_run = run_movies(run_dag, {"modified_column": "updated_at", "created_column": "created_at"})

    assert dag_run.state == "success", task_states(dag_run)
    indexed = indexed_documents(es_server)
    assert len(indexed) == loaded["content.film_work"]
    assert indexed == expected_documents(source_conn)
    assert read_state()["hwm"] is not None


def test_incremental_selection_rereads_the_hwm_and_nothing_older(generated_source):
    columns = read_columns(generated_source, queries.columns_query(), "content", list(queries.SOURCE_TABLES))
    change_columns = queries.resolve_change_columns(columns, "modified", "created")
    full = queries.payload_query("content", change_columns, "all")
    keys = {str(row.id): row.change_key for row in stream_film_rows(generated_source, full, {}, 50)}
    hwm = max(keys.values())
    incremental = queries.payload_query("content", change_columns, "incremental")

    at_hwm = {str(r.id) for r in stream_film_rows(generated_source, incremental, {"lower": hwm}, 50)}
    after_hwm = list(
        stream_film_rows(generated_source, incremental, {"lower": hwm + timedelta(microseconds=1)}, 50)
    )

    assert at_hwm == {film for film, key in keys.items() if key == hwm} and at_hwm
    assert after_hwm == []
    (a_person,) = generated_source.execute(
        "UPDATE content.person SET modified = %s WHERE id = (SELECT person_id FROM content.person_film_work "
        "LIMIT 1) RETURNING id",
        [hwm + timedelta(seconds=1)],
    ).fetchone()
    films = {
        str(f)
        for (f,) in generated_source.execute(
            "SELECT DISTINCT film_work_id FROM content.person_film_work WHERE person_id = %s", [a_person]
        )
    }
    changed = stream_film_rows(generated_source, incremental, {"lower": hwm + timedelta(microseconds=1)}, 50)
    assert {str(r.id) for r in changed} == films
