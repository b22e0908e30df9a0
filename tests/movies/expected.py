"""What the source rows imply, computed independently of the pipeline's SQL: plain SELECTs + Python."""

from __future__ import annotations

from collections import defaultdict

import psycopg
from psycopg import sql

ROLE_KEYS = {"director": "director", "actor": "actors", "writer": "writers"}


def expected_documents(conn: psycopg.Connection, schema: str = "content") -> dict[str, dict]:
    def rows(query: str) -> list[tuple]:
        return conn.execute(sql.SQL(query).format(s=sql.Identifier(schema))).fetchall()

    genres = dict(rows("SELECT id, name FROM {s}.genre"))
    persons = dict(rows("SELECT id, full_name FROM {s}.person"))
    film_genres: dict = defaultdict(set)
    for genre_id, film_id in rows("SELECT genre_id, film_work_id FROM {s}.genre_film_work"):
        film_genres[film_id].add(genre_id)
    film_people: dict = defaultdict(lambda: defaultdict(set))
    for film_id, person_id, role in rows(
        "SELECT film_work_id, person_id, role::text FROM {s}.person_film_work"
    ):
        if role in ROLE_KEYS:
            film_people[film_id][role].add(person_id)
    documents = {}
    for film_id, title, description, rating in rows(
        "SELECT id, title, description, rating FROM {s}.film_work"
    ):
        people = {
            role: sorted(
                ({"id": str(p), "name": persons[p]} for p in film_people[film_id][role]),
                key=lambda person: (person["name"], person["id"]),
            )
            for role in ROLE_KEYS
        }
        documents[str(film_id)] = {
            "id": str(film_id),
            "imdb_rating": rating,
            "genre": [genres[g] for g in sorted(film_genres[film_id], key=lambda g: (genres[g], str(g)))],
            "title": title,
            "description": description,
            "director": [p["name"] for p in people["director"]],
            "actors_names": [p["name"] for p in people["actor"]],
            "actors": people["actor"],
            "writers_names": [p["name"] for p in people["writer"]],
            "writers": people["writer"],
        }
    return documents


def indexed_documents(server, alias: str = "movies") -> dict[str, dict]:
    """``{_id: _source}`` of every document behind ``alias``, read from the server's state directly."""
    import json

    cluster = server.cluster
    with cluster.lock:
        (index,) = cluster.resolve(alias)
        return {doc_id: json.loads(source) for doc_id, (_, source) in cluster.indices[index].docs.items()}


def versions(server, alias: str = "movies") -> dict[str, int]:
    cluster = server.cluster
    with cluster.lock:
        (index,) = cluster.resolve(alias)
        return {doc_id: version for doc_id, (version, _) in cluster.indices[index].docs.items()}
