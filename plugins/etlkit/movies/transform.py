"""Aggregated film-work row → Elasticsearch document (§3). Pure: no I/O, no Airflow."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ROLE_FIELDS = {"director": "director", "actor": "actors", "writer": "writers"}
DOCUMENT_KEYS = (
    "id",
    "imdb_rating",
    "genre",
    "title",
    "description",
    "director",
    "actors_names",
    "actors",
    "writers_names",
    "writers",
)


@dataclass(frozen=True, slots=True)
class FilmRow:
    """One row of the payload query: the film, its change key and its aggregated links,
    ``genres`` as ``(id, name)`` and ``persons`` as ``(id, full_name, role)`` tuples."""

    id: Any
    title: str
    description: str | None
    rating: float | None
    change_key: datetime | None
    genres: list[tuple[Any, str]] = field(default_factory=list)
    persons: list[tuple[Any, str, str | None]] = field(default_factory=list)


@dataclass
class TransformStats:
    ignored_roles: int = 0


def canonical_id(value: Any) -> str:
    """Lowercase canonical UUID string, whatever the driver gave us."""
    return str(value) if isinstance(value, uuid.UUID) else str(uuid.UUID(str(value)))


def as_utc(value: datetime | None) -> datetime | None:
    """A ``timestamp without time zone`` is taken to be UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sorted_people(people: dict[str, str]) -> list[dict[str, str]]:
    return [{"id": pid, "name": name} for pid, name in sorted(people.items(), key=lambda p: (p[1], p[0]))]


def build_document(row: FilmRow, stats: TransformStats | None = None) -> dict[str, Any]:
    """The ten-key ``_source``; every list sorted by (name, id) on code points, so output is stable."""
    genres = {canonical_id(genre_id): name for genre_id, name in row.genres or ()}
    by_role: dict[str, dict[str, str]] = {role: {} for role in ROLE_FIELDS}
    for person_id, name, role in row.persons or ():
        if role not in by_role:
            if stats is not None:
                stats.ignored_roles += 1
            continue
        by_role[role][canonical_id(person_id)] = name
    directors = _sorted_people(by_role["director"])
    actors = _sorted_people(by_role["actor"])
    writers = _sorted_people(by_role["writer"])
    return {
        "id": canonical_id(row.id),
        "imdb_rating": None if row.rating is None else float(row.rating),
        "genre": [name for _, name in sorted(genres.items(), key=lambda g: (g[1], g[0]))],
        "title": row.title,
        "description": row.description,
        "director": [p["name"] for p in directors],
        "actors_names": [p["name"] for p in actors],
        "actors": actors,
        "writers_names": [p["name"] for p in writers],
        "writers": writers,
    }


def document_json(document: dict[str, Any]) -> bytes:
    """Stable serialisation: the same document always gives the same bytes."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
