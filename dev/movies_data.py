"""The movies source schema (both timestamp conventions) and a generator of realistic catalogue data.

Used by the tests, the benchmark and the demo. Variety on purpose: NULL descriptions and ratings, films with
no genres or persons, persons with two roles on one film, duplicate link rows, unknown and NULL roles
(convention B), Cyrillic and accented names, names differing only in case or surrounding spaces.

    python -m dev.movies_data --dbname movies_demo --films 1000 --convention B
"""

from __future__ import annotations

import argparse
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)

_DDL_A = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE {schema}.film_work (
    id uuid PRIMARY KEY, title text NOT NULL, description text, creation_date date, rating float,
    type text NOT NULL, created timestamptz, modified timestamptz);
CREATE TABLE {schema}.genre (
    id uuid PRIMARY KEY, name text NOT NULL, description text, created timestamptz, modified timestamptz);
CREATE TABLE {schema}.person (
    id uuid PRIMARY KEY, full_name text NOT NULL, created timestamptz, modified timestamptz);
CREATE TABLE {schema}.genre_film_work (
    id uuid PRIMARY KEY, genre_id uuid NOT NULL REFERENCES {schema}.genre (id) ON DELETE CASCADE,
    film_work_id uuid NOT NULL REFERENCES {schema}.film_work (id) ON DELETE CASCADE, created timestamptz);
CREATE TABLE {schema}.person_film_work (
    id uuid PRIMARY KEY, film_work_id uuid NOT NULL REFERENCES {schema}.film_work (id) ON DELETE CASCADE,
    person_id uuid NOT NULL REFERENCES {schema}.person (id) ON DELETE CASCADE, role text NOT NULL,
    created timestamptz);
"""

_DDL_B = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE {schema}.film_work (
    id uuid PRIMARY KEY, title varchar(255) NOT NULL, description text, creation_date timestamptz,
    rating float, type text NOT NULL, created_at timestamptz, updated_at timestamptz);
CREATE TABLE {schema}.genre (
    id uuid PRIMARY KEY, name varchar(255) NOT NULL, description text, created_at timestamptz,
    updated_at timestamptz);
CREATE TABLE {schema}.person (
    id uuid PRIMARY KEY, full_name varchar(255) NOT NULL, created_at timestamptz, updated_at timestamptz);
CREATE TABLE {schema}.genre_film_work (
    id uuid PRIMARY KEY, genre_id uuid NOT NULL REFERENCES {schema}.genre (id) ON DELETE CASCADE,
    film_work_id uuid NOT NULL REFERENCES {schema}.film_work (id) ON DELETE CASCADE,
    created_at timestamptz, updated_at timestamptz);
CREATE TABLE {schema}.person_film_work (
    id uuid PRIMARY KEY, film_work_id uuid NOT NULL REFERENCES {schema}.film_work (id) ON DELETE CASCADE,
    person_id uuid NOT NULL REFERENCES {schema}.person (id) ON DELETE CASCADE, role text,
    created_at timestamptz, updated_at timestamptz);
"""

# The b-tree indexes the spec recommends: change columns and the link tables' foreign keys.
_INDEXES = [
    ("film_work", "{modified}"),
    ("genre", "{modified}"),
    ("person", "{modified}"),
    ("genre_film_work", "{link_change}"),
    ("person_film_work", "{link_change}"),
    ("genre_film_work", "film_work_id"),
    ("genre_film_work", "genre_id"),
    ("person_film_work", "film_work_id"),
    ("person_film_work", "person_id"),
]

COLUMNS = {
    "A": {"created": "created", "modified": "modified", "link_change": "created"},
    "B": {"created": "created_at", "modified": "updated_at", "link_change": "updated_at"},
}

GENRES = [
    "Action",
    "Adventure",
    "Animation",
    "Biography",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Family",
    "Fantasy",
    "History",
    "Horror",
    "Music",
    "Musical",
    "Mystery",
    "News",
    "Reality-TV",
    "Romance",
    "Sci-Fi",
    "Sport",
    "Talk-Show",
    "Thriller",
    "War",
    "Western",
    "Драма",
    "Комедия",
    "Ужасы",
    "drama",
]
FIRST = [
    "Ann",
    "Bob",
    "Cora",
    "Dmitry",
    "Élodie",
    "Фёдор",
    "Ivan",
    "José",
    "Lee",
    "Mia",
    "Ольга",
    "Zoë",
    "Ng",
]
LAST = [
    "Lee",
    "Stone",
    "Vale",
    "Петров",
    "O'Brien",
    "García",
    "Smith",
    "Иванова",
    "Nakamura",
    "Müller",
    "du Pré",
]
WORDS = [
    "Star",
    "Night",
    "Звезда",
    "Return",
    "Empire",
    "Lost",
    "River",
    "Ночь",
    "Edge",
    "Dawn",
    "Ghost",
    "City",
]


def create_schema(conn: psycopg.Connection, convention: str = "A", schema: str = "content") -> None:
    """Create the five tables (and the recommended indexes) in ``convention`` A or B."""
    ddl = _DDL_A if convention == "A" else _DDL_B
    for statement in filter(str.strip, ddl.split(";")):
        conn.execute(sql.SQL(statement).format(schema=sql.Identifier(schema)))
    create_indexes(conn, convention, schema)


def create_indexes(conn: psycopg.Connection, convention: str, schema: str = "content") -> None:
    names = COLUMNS[convention]
    for table, column in _INDEXES:
        column = column.format(**names)
        conn.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} ({})").format(
                sql.Identifier(f"{table}_{column}_idx"),
                sql.Identifier(schema),
                sql.Identifier(table),
                sql.Identifier(column),
            )
        )


def _copy(conn: psycopg.Connection, schema: str, table: str, columns: list[str], rows) -> int:
    statement = sql.SQL("COPY {}.{} ({}) FROM STDIN").format(
        sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    count = 0
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def _person_name(rng: random.Random, n: int) -> str:
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    if n % 97 == 0:
        name = name.upper()  # differs from another only in case
    if n % 131 == 0:
        name = f" {name} "  # names are passed through untrimmed
    return name


def generate(
    conn: psycopg.Connection,
    films: int,
    *,
    convention: str = "A",
    schema: str = "content",
    seed: int = 7,
    persons: int | None = None,
) -> dict[str, int]:
    """Insert ``films`` film works with genres, persons and links (COPY, streamed; memory flat in ``films``)."""
    rng = random.Random(seed)
    names = COLUMNS[convention]
    convention_b = convention == "B"
    persons = persons or max(10, films // 2)

    def stamp(offset_minutes: int) -> datetime:
        return BASE_TIME + timedelta(minutes=offset_minutes, microseconds=rng.randrange(1_000_000))

    def ts_columns(created: datetime, modified: datetime, link: bool) -> list:
        if link and not convention_b:
            return [created]
        return [created, modified]

    def ts_names(link: bool) -> list[str]:
        if link and not convention_b:
            return [names["created"]]
        return [names["created"], names["modified"]]

    genre_ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in GENRES]
    _copy(
        conn,
        schema,
        "genre",
        ["id", "name", "description", *ts_names(False)],
        (
            [gid, name, None if i % 3 else f"About {name}", stamp(i), stamp(i)]
            for i, (gid, name) in enumerate(zip(genre_ids, GENRES, strict=True))
        ),
    )
    person_ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(persons)]
    _copy(
        conn,
        schema,
        "person",
        ["id", "full_name", *ts_names(False)],
        (
            [pid, _person_name(rng, n), stamp(n % 5000), stamp(n % 5000 + 10)]
            for n, pid in enumerate(person_ids)
        ),
    )
    film_ids: list[uuid.UUID] = []

    def film_rows():
        for n in range(films):
            fid = uuid.UUID(int=rng.getrandbits(128), version=4)
            film_ids.append(fid)
            title = " ".join(rng.sample(WORDS, rng.randint(1, 3))) + (f" {n}" if n % 4 else "")
            description = None if n % 5 == 0 else f"{title}: a story about {rng.choice(WORDS).lower()}."
            rating = None if n % 11 == 0 else round(rng.uniform(1, 10), 1)
            created = stamp(n % 100_000)
            yield [
                fid,
                title,
                description,
                None,
                rating,
                "movie" if n % 6 else "tv_show",
                created,
                created + timedelta(days=1),
            ]

    counts = {
        "film_work": _copy(
            conn,
            schema,
            "film_work",
            [
                "id",
                "title",
                "description",
                "creation_date",
                "rating",
                "type",
                names["created"],
                names["modified"],
            ],
            film_rows(),
        )
    }

    def genre_links():
        for n, fid in enumerate(film_ids):
            if n % 13 == 0:
                continue  # no genres
            chosen = rng.sample(genre_ids, rng.randint(1, 3))
            if n % 17 == 0:
                chosen.append(chosen[0])  # duplicate link row
            for gid in chosen:
                created = stamp(n % 100_000 + 5)
                yield [uuid.uuid4(), gid, fid, *ts_columns(created, created, True)]

    roles = ["actor", "actor", "actor", "director", "writer"]

    def person_links():
        for n, fid in enumerate(film_ids):
            if n % 19 == 0:
                continue  # no persons at all
            cast = rng.sample(person_ids, min(len(person_ids), rng.randint(1, 6)))
            links = [(pid, rng.choice(roles)) for pid in cast]
            if n % 7 == 0:
                links.append((cast[0], "writer" if links[0][1] != "writer" else "director"))  # two roles
            if n % 23 == 0:
                links.append(links[0])  # duplicate link row
            if convention_b and n % 29 == 0:
                links.append((cast[-1], None if n % 2 else "producer"))  # ignored roles
            for pid, role in links:
                created = stamp(n % 100_000 + 7)
                yield [uuid.uuid4(), fid, pid, role, *ts_columns(created, created, True)]

    counts["genre_film_work"] = _copy(
        conn, schema, "genre_film_work", ["id", "genre_id", "film_work_id", *ts_names(True)], genre_links()
    )
    counts["person_film_work"] = _copy(
        conn,
        schema,
        "person_film_work",
        ["id", "film_work_id", "person_id", "role", *ts_names(True)],
        person_links(),
    )
    counts["genre"], counts["person"] = len(genre_ids), len(person_ids)
    conn.execute(sql.SQL("ANALYZE"))
    return counts


def load_data_dump(conn: psycopg.Connection, path: Path) -> dict[str, int]:
    """Load a data-only ``pg_dump`` (``COPY ... FROM stdin`` blocks) into an existing schema, streaming.

    The tables must exist first (``create_schema``); other statements of the dump (``SET``...) are skipped.
    """
    counts: dict[str, int] = {}
    with path.open(encoding="utf-8") as dump:
        for line in dump:
            if not line.startswith("COPY "):
                continue
            table = line.split()[1]
            rows = 0
            with conn.cursor() as cursor, cursor.copy(line.rstrip().removesuffix(";")) as copy:
                for data in dump:
                    if data.startswith("\\."):
                        break
                    copy.write(data)
                    rows += 1
            counts[table] = rows
    conn.execute("ANALYZE")
    return counts


def main() -> None:
    from dev import pgdb

    parser = argparse.ArgumentParser(description="Create and fill a movies source database")
    parser.add_argument("--dbname", required=True)
    parser.add_argument("--films", type=int, default=1000)
    parser.add_argument("--convention", choices=["A", "B"], default="A")
    parser.add_argument(
        "--dump", type=Path, help="load this data-only dump (convention B) instead of generating"
    )
    args = parser.parse_args()
    pgdb.recreate_database(args.dbname)
    with psycopg.connect(pgdb.dsn(args.dbname), autocommit=True) as conn:
        if args.dump:
            create_schema(conn, "B")
            print(load_data_dump(conn, args.dump))
        else:
            create_schema(conn, args.convention)
            print(generate(conn, args.films, convention=args.convention))


if __name__ == "__main__":
    main()
