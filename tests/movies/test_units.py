"""Unit tests of the Airflow-free movies package: transform, SQL building, state, modes, bulk, reconcile."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from etlkit.common.errors import BadInputError, ConfigurationError, TransientError
from etlkit.movies import queries
from etlkit.movies.bulk import (
    BulkItemsRejected,
    BulkItemsRetryable,
    BulkLoader,
    chunk_actions,
    delete_action,
    index_action,
    inspect_items,
)
from etlkit.movies.index import index_body, mappings_equal
from etlkit.movies.overlap import drop_unchanged_overlap
from etlkit.movies.reconcile import StreamOrderError, diff_sorted_ids
from etlkit.movies.state import MoviesState, decide_mode, lower_bound
from etlkit.movies.transform import FilmRow, TransformStats, build_document, document_json
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.movies

FILM = "0B7E1C9A-3F2D-4C55-9A41-6D2F0E8B1A10"
BOB = "5d1f0c2e-8a77-4b1e-9c3a-2f6e4d0b9a11"
CORA = "a3c9e0f1-2b4d-4e6f-8a1b-3c5d7e9f0a12"
ANN = "11111111-1111-4111-8111-111111111111"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_transform_matches_the_spec_example():
    row = FilmRow(
        id=FILM,
        title="Example Film",
        description=None,
        rating=7.3,
        change_key=NOW,
        genres=[
            ("22222222-2222-4222-8222-222222222222", "Drama"),
            ("33333333-3333-4333-8333-333333333333", "Comedy"),
            ("22222222-2222-4222-8222-222222222222", "Drama"),
        ],
        persons=[
            (CORA, "Cora Vale", "actor"),
            (ANN, "Ann Lee", "director"),
            (BOB, "Bob Stone", "actor"),
            (BOB, "Bob Stone", "actor"),
        ],
    )
    assert build_document(row) == {
        "id": FILM.lower(),
        "imdb_rating": 7.3,
        "genre": ["Comedy", "Drama"],
        "title": "Example Film",
        "description": None,
        "director": ["Ann Lee"],
        "actors_names": ["Bob Stone", "Cora Vale"],
        "actors": [{"id": BOB, "name": "Bob Stone"}, {"id": CORA, "name": "Cora Vale"}],
        "writers_names": [],
        "writers": [],
    }


def test_transform_roles_order_and_untouched_names():
    stats = TransformStats()
    twin_a, twin_b = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"
    row = FilmRow(
        FILM,
        " Title ",
        "",
        None,
        None,
        [],
        [
            (twin_b, "Same", "writer"),
            (twin_a, "Same", "writer"),
            (twin_a, "Same", "actor"),
            (BOB, "Ölaf", "writer"),
            (CORA, "Zed", "writer"),
            (ANN, "x", "producer"),
            (ANN, "x", None),
            (ANN, "x", "Actor"),
        ],
    )
    document = build_document(row, stats)
    assert stats.ignored_roles == 3
    assert document["title"] == " Title " and document["description"] == ""
    assert document["imdb_rating"] is None and document["genre"] == [] and document["director"] == []
    assert document["writers_names"] == ["Same", "Same", "Zed", "Ölaf"]  # code points: 'Z' < 'Ö'
    assert [w["id"] for w in document["writers"][:2]] == [twin_a, twin_b]
    assert document["actors"] == [{"id": twin_a, "name": "Same"}]  # a person with two roles is in both lists
    assert document_json(document) == document_json(build_document(row))


def test_no_persons_gives_five_empty_lists():
    document = build_document(FilmRow(FILM, "T", None, 5, None, [], []))
    assert [document[k] for k in ("director", "actors_names", "actors", "writers_names", "writers")] == [
        []
    ] * 5


def test_index_body_is_the_contract():
    body = index_body()
    filters = body["settings"]["analysis"]["analyzer"]["ru_en"]["filter"]
    assert filters.index("english_possessive_stemmer") == filters.index("english_stemmer") + 1
    assert body["mappings"]["dynamic"] == "strict"
    assert mappings_equal(body["mappings"])
    changed = index_body()["mappings"]
    changed["properties"]["genre"]["type"] = "text"
    assert not mappings_equal(changed)


SPEC = REPO_ROOT.parent / "shared" / "specs" / "movies-elasticsearch.md"


@pytest.mark.skipif(not SPEC.is_file(), reason="the spec is not on this machine")
def test_index_body_is_the_body_of_the_spec():
    section = SPEC.read_text().split("## 2.", 1)[1]
    spec_body = json.loads(section.split("```json", 1)[1].split("```", 1)[0])
    assert index_body() == spec_body


def test_change_column_resolution_both_conventions():
    convention_a = [(t, c) for t in queries.ENTITY_TABLES for c in ("id", "created", "modified")]
    convention_a += [(t, c) for t in queries.LINK_TABLES for c in ("id", "created")]
    resolved = queries.resolve_change_columns(convention_a, "modified", "created")
    assert resolved == {
        "film_work": "modified",
        "genre": "modified",
        "person": "modified",
        "genre_film_work": "created",
        "person_film_work": "created",
    }
    convention_b = [(t, c) for t in queries.SOURCE_TABLES for c in ("created_at", "updated_at")]
    assert set(queries.resolve_change_columns(convention_b, "updated_at", "created_at").values()) == {
        "updated_at"
    }
    with pytest.raises(ConfigurationError, match="'person' has no change column 'updated_at'"):
        queries.resolve_change_columns(
            [c for c in convention_b if c != ("person", "updated_at")], "updated_at", "created_at"
        )
    with pytest.raises(ConfigurationError, match="genre_film_work"):
        queries.resolve_change_columns(
            [c for c in convention_b if c[0] != "genre_film_work"] + [("genre_film_work", "id")],
            "updated_at",
            "created_at",
        )


def test_payload_sql_quotes_identifiers(source_conn):
    columns = dict.fromkeys(queries.SOURCE_TABLES, 'we"ird')
    text = queries.payload_query("my schema", columns, "incremental").as_string(source_conn)
    assert '"my schema".film_work' in text and '"we""ird" >= %(lower)s' in text
    with pytest.raises(ValueError):
        queries.payload_query("content", columns, "everything")


def test_state_hwm_never_moves_back_and_lower_bound():
    state = MoviesState(hwm="2025-06-01T12:00:00.000000+00:00")
    assert state.after_incremental(None) == state
    assert state.after_incremental(NOW - timedelta(hours=1)).hwm == state.hwm
    assert state.after_incremental(NOW + timedelta(microseconds=5)).hwm == "2025-06-01T12:00:00.000005+00:00"
    assert lower_bound(state.hwm, 60) == NOW - timedelta(seconds=60)
    assert lower_bound(state.hwm, 0) == NOW
    assert lower_bound(None, 60) is None
    assert MoviesState().after_full(None, "movies_1", NOW).hwm == "1970-01-01T00:00:00.000000+00:00"
    assert MoviesState.from_json(state.to_json()) == state


@pytest.mark.parametrize(
    ("param", "state", "kind", "mappings_ok", "expected"),
    [
        (True, MoviesState(hwm="x"), "alias", True, ("full", "full_refresh param")),
        (
            False,
            MoviesState(hwm="2025-01-01T00:00:00+00:00"),
            "missing",
            False,
            ("full", "target index missing"),
        ),
        (False, MoviesState(), "alias", True, ("full", "no high-water mark stored")),
        (
            False,
            MoviesState(hwm="h", last_full_refresh_at=NOW.isoformat()),
            "alias",
            False,
            ("full", "mappings"),
        ),
        (
            False,
            MoviesState(hwm="h", last_full_refresh_at="2025-05-30T00:00:00+00:00"),
            "alias",
            True,
            ("full", "interval"),
        ),
        (
            False,
            MoviesState(hwm="h", last_full_refresh_at=NOW.isoformat()),
            "alias",
            True,
            ("incremental", "since"),
        ),
        (
            False,
            MoviesState(hwm="h", last_full_refresh_at=NOW.isoformat()),
            "legacy_index",
            True,
            ("incremental", ""),
        ),
    ],
)
def test_mode_decision_table(param, state, kind, mappings_ok, expected):
    mode, reason = decide_mode(
        full_refresh_param=param,
        state=state,
        target_kind=kind,
        mappings_ok=mappings_ok,
        full_refresh_interval=timedelta(hours=24),
        now=NOW,
    )
    assert mode == expected[0] and expected[1] in reason


def test_chunking_by_count_and_bytes():
    actions = [index_action(str(n), b'{"t":"' + b"x" * 90 + b'"}') for n in range(10)]
    size = len(actions[0].payload)
    assert [len(c) for c in chunk_actions(actions, max_docs=4, max_bytes=10**6)] == [4, 4, 2]
    by_bytes = list(chunk_actions(actions, max_docs=100, max_bytes=size * 3 + 1))
    assert [len(c) for c in by_bytes] == [3, 3, 3, 1]
    assert all(sum(len(a.payload) for a in c) <= size * 3 + 1 for c in by_bytes)
    huge = [index_action("big", b"y" * 1000), *actions[:2]]
    assert [len(c) for c in chunk_actions(huge, max_docs=100, max_bytes=300)] == [1, 2]


def test_inspect_items_and_error_kinds():
    items = [
        {"index": {"_id": "a", "status": 201}},
        {"delete": {"_id": "b", "status": 404, "result": "not_found"}},
        {
            "index": {
                "_id": "c",
                "status": 400,
                "error": {"type": "strict_dynamic_mapping_exception", "reason": "r" * 500},
            }
        },
    ]
    succeeded, failures = inspect_items(items)
    assert succeeded == 2
    assert [(f.doc_id, f.status, f.error_type, len(f.reason)) for f in failures] == [
        ("c", 400, "strict_dynamic_mapping_exception", 300)
    ]


class RecordingClient:
    """Answers ``bulk`` from a script of item statuses per call, recording the ids sent."""

    def __init__(self, script):
        self.script = list(script)
        self.sent: list[list[str]] = []

    def bulk(self, operations, index):
        lines = b"".join(operations).splitlines()
        ids = [json.loads(line)["index"]["_id"] for line in lines[::2]]
        self.sent.append(ids)
        statuses = self.script.pop(0) if self.script else {}
        items = []
        for doc_id in ids:
            status = statuses.get(doc_id, 201)
            result = {"_id": doc_id, "status": status}
            if status >= 300:
                result["error"] = {
                    "type": "es_rejected_execution_exception" if status == 429 else "x",
                    "reason": "r",
                }
            items.append({"index": result})
        return {"errors": any(s >= 300 for s in statuses.values()), "items": items}


def loader(client, **kwargs) -> BulkLoader:
    return BulkLoader(client, index="i", max_chunk_docs=2, sleep=lambda s: None, **kwargs)


def test_429_items_are_retried_a_bounded_number_of_times():
    docs = [index_action(str(n), b"{}") for n in range(4)]
    client = RecordingClient([{"1": 429}, {"1": 429}])
    result = loader(client).load(docs)
    assert result.succeeded == 4
    assert client.sent == [["0", "1"], ["1"], ["1"], ["2", "3"]]
    stubborn = RecordingClient([{"1": 429}] * 10)
    with pytest.raises(BulkItemsRetryable, match="1 bulk item"):
        loader(stubborn, retries_429=3).load(docs)
    assert len(stubborn.sent) == 4  # first try + 3 retries, then stop; nothing after the failing chunk


def test_a_rejected_item_stops_after_its_chunk_and_reports_the_first_errors():
    docs = [index_action(str(n), b"{}") for n in range(6)]
    client = RecordingClient([{}, {"2": 400, "3": 400}])
    with pytest.raises(BulkItemsRejected) as failure:
        loader(client, max_reported_errors=1).load(docs)
    assert client.sent == [["0", "1"], ["2", "3"]]
    assert "2 bulk item(s) failed" in str(failure.value) and "2: 400 x: r" in str(failure.value)
    assert "3: 400" not in str(failure.value)
    assert isinstance(failure.value, BadInputError)
    assert issubclass(BulkItemsRetryable, TransientError)
    with pytest.raises(BulkItemsRetryable):
        loader(RecordingClient([{"0": 503}])).load(docs)


def test_delete_action_shape():
    assert delete_action("x").payload == b'{"delete":{"_id":"x"}}\n'


def test_reconcile_merge_and_order_check():
    source = ["a", "b", "d", "e"]
    index = ["b", "c", "e", "f"]
    assert list(diff_sorted_ids(source, index)) == [
        ("index", "a"),
        ("delete", "c"),
        ("index", "d"),
        ("delete", "f"),
    ]
    assert list(diff_sorted_ids([], ["x"])) == [("delete", "x")]
    with pytest.raises(StreamOrderError):
        list(diff_sorted_ids(["b", "a"], []))
    with pytest.raises(StreamOrderError):
        list(diff_sorted_ids([], ["a", "a"]))


def test_overlap_rows_identical_to_the_index_are_skipped():
    boundary = NOW
    rows = [
        (FilmRow("1", "t", None, None, NOW - timedelta(seconds=5)), {"id": "1", "v": 1}),
        (FilmRow("2", "t", None, None, NOW), {"id": "2", "v": "late commit"}),
        (FilmRow("3", "t", None, None, NOW + timedelta(seconds=1)), {"id": "3", "v": 1}),
    ]
    indexed = {"1": {"id": "1", "v": 1}, "2": {"id": "2", "v": "old"}, "3": {"id": "3", "v": 1}}
    asked: list[list[str]] = []

    def fetch(ids):
        asked.append(ids)
        return {i: indexed[i] for i in ids}

    counts: dict[str, int] = {}
    kept = [doc["id"] for _, doc in drop_unchanged_overlap(rows, boundary, fetch, 10, counts)]
    assert kept == ["2", "3"] and counts == {"unchanged": 1}
    assert asked == [["1", "2"]]  # rows past the HWM are never looked up
