"""Transform rules (spec §3) and the filters language (§1.5, §4.2–4.3), without Airflow or a database."""

from __future__ import annotations

import json
from datetime import date

import pytest

from etlkit.common.errors import BadInputError
from etlkit.enderturing import tables as t
from etlkit.enderturing.extract import changed_categories
from etlkit.enderturing.filters import Window, categories_filter, day_windows, encode, expression, plan_passes
from etlkit.enderturing.transform import Transformer, to_timestamp

pytestmark = pytest.mark.enderturing
SESSION_ID = "6f1c2b8e-3c1d-4e5f-9a7b-1234567890ab"


class ListSink:
    def __init__(self):
        self.rows: dict[str, list[dict]] = {}
        self.replaced: dict[str, list] = {}

    def add(self, table, row):
        self.rows.setdefault(table.name, []).append(dict(zip(table.columns, row, strict=True)))

    def replace(self, table, parent_key):
        self.replaced.setdefault(table.name, []).append(parent_key)


def transformed(method: str, *args):
    sink = ListSink()
    transformer = Transformer(sink)
    getattr(transformer, method)(*args)
    return sink, transformer


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("2024-07-08T07:30:44.947975", "2024-07-08 07:30:45"),
        ("2024-07-08T07:30:44.4", "2024-07-08 07:30:44"),
        ("2024-07-08T07:30:44.5", "2024-07-08 07:30:45"),
        ("2024-07-08T23:59:59.6", "2024-07-09 00:00:00"),
        ("2024-07-08T09:30:44+02:00", "2024-07-08 07:30:44"),
        ("0001-01-01T00:00:00", "0001-01-01 00:00:00"),
        ("", None),
        (None, None),
    ],
)
def test_timestamps_are_utc_and_rounded_to_the_second(raw, stored):
    assert to_timestamp(raw) == stored


def test_session_mapping_extra_and_coercion():
    session = {
        "id": SESSION_ID,
        "start_dt": "2024-06-26T10:15:44.51",
        "nps": "n/a",
        "fcr": "1",
        "csi": 4.0,
        "is_processed": "true",
        "new_field": {"x": 1},
        "agent_name": "ignored",
        "summary_text": "bad\x00byte",
        "overlaps_data": {"client": 3.12, "agent": 1.36},
    }
    sink, transformer = transformed("session", session, "test")
    row = sink.rows["sessions"][0]
    assert row["start_dt"] == "2024-06-26 10:15:45"
    assert (row["nps"], row["fcr"], row["csi"], row["is_processed"]) == (None, 1, 4, True)
    assert row["queue_name"] is None  # missing mapped field
    assert json.loads(row["extra"]) == {"nps": "n/a", "new_field": {"x": 1}, "summary_text": "badbyte"}
    assert json.loads(row["overlaps_data"]) == {"client": 3.12, "agent": 1.36}
    assert transformer.warnings["sessions.nps: uncoercible"] == 1
    # Absent child lists leave existing children alone: nothing is replaced.
    assert sink.replaced == {}


def test_session_without_id_fails():
    with pytest.raises(BadInputError, match="'id'"):
        transformed("session", {"start_dt": "2024-06-26T10:00:00"}, "/sessions item 3")


def test_repeated_tag_matches_and_tags_without_matches():
    session = {
        "id": SESSION_ID,
        "tags": [
            {
                "id": 7,
                "match": [{"transcript_id": 9_000_000_001, "score": 0.5}, {"transcript_id": 9_000_000_001}],
            },
            {"id": 8, "match": [], "weight": 2},
            {"id": 9, "match": [{"transcript_id": 5, "new_key": True}]},
        ],
    }
    sink, _ = transformed("session", session, "test")
    tags = [
        (r["tag_id"], r["match_no"], r["transcript_id"], json.loads(r["extra"]))
        for r in sink.rows["sessions_tags"]
    ]
    assert tags == [
        (7, 0, 9_000_000_001, {}),
        (7, 1, 9_000_000_001, {}),
        (8, 0, None, {"parent": {"weight": 2}}),
        (9, 0, 5, {"new_key": True}),
    ]
    assert sink.replaced["sessions_tags"] == [SESSION_ID]


def test_crm_statuses_accept_strings_objects_and_numbers():
    items = ["won", {"crm_status": "lost", "source": "crm"}, 3, None, {"other": 1}, "won"]
    sink, transformer = transformed("session", {"id": SESSION_ID, "crm_statuses": items}, "test")
    rows = [(r["crm_status"], json.loads(r["extra"])) for r in sink.rows["sessions_crm_statuses"]]
    assert rows == [("won", {}), ("lost", {"source": "crm"}), ("3", {})]
    assert transformer.warnings["sessions_crm_statuses: item without crm_status skipped"] == 2
    assert transformer.warnings["sessions_crm_statuses: duplicate key"] == 1


def test_empty_child_list_replaces_children_with_nothing():
    sink, _ = transformed("session", {"id": SESSION_ID, "categories": [], "reviewers": []}, "test")
    assert sink.replaced == {"sessions_categories": [SESSION_ID], "sessions_reviewers": [SESSION_ID]}
    assert "sessions_categories" not in sink.rows


def test_scores_sheet_without_reviewer_is_the_automated_reviewer():
    sheets = {
        "items": [
            {
                "id": 11,
                "session_id": "ignored",
                "scorecard_id": 2,
                "reviewer_id": None,
                "meta": {"is_agreed": False},
                "point_scores": [{"id": 1, "scorecard_point_id": 5, "score": 2.5, "comment": "ok", "x": 1}],
            }
        ]
    }
    sink, _ = transformed("scores", SESSION_ID, sheets)
    row = sink.rows["sessions_scores"][0]
    assert (row["session_id"], row["scorecard_id"], row["reviewer_id"], row["scorecard_point_id"]) == (
        SESSION_ID,
        2,
        0,
        5,
    )
    assert row["score"] == 2.5
    assert json.loads(row["extra"]) == {"x": 1, "parent": {"id": 11, "meta": {"is_agreed": False}}}


def test_summaries_accept_a_single_object_and_null():
    sink, _ = transformed(
        "summaries", SESSION_ID, {"id": 4, "text": "t", "created_at": "2024-06-26T10:00:00.7"}
    )
    assert [(r["summary_no"], r["summary_id"], r["created_at"]) for r in sink.rows["sessions_summaries"]] == [
        (0, 4, "2024-06-26 10:00:01")
    ]
    sink, _ = transformed("summaries", SESSION_ID, None)
    assert "sessions_summaries" not in sink.rows and sink.replaced["sessions_summaries"] == [SESSION_ID]


def test_users_get_synthetic_user_0_unless_et_returns_one():
    sink, _ = transformed("users", [{"id": 5, "email": "a@b.c", "role_ids": [2]}])
    ids = {r["id"]: r for r in sink.rows["users"]}
    assert ids[0]["full_name"] == "Ender Turing" and ids[0]["invite_expires"] == "1900-01-01 00:00:00"
    assert json.loads(ids[5]["extra"]) == {}
    sink, _ = transformed("users", [{"id": 0, "full_name": "Bot"}])
    assert [r["full_name"] for r in sink.rows["users"]] == ["Bot"]


def test_agents_groups_and_unknown_fields():
    agents = [
        {"id": 1, "name": "A", "groups": [{"group_id": 2, "start_dt": None}], "hobby": "chess", "user": {}}
    ]
    sink, _ = transformed("agents", agents)
    assert json.loads(sink.rows["agents"][0]["extra"]) == {"hobby": "chess"}
    assert sink.rows["agent_group_associations"][0]["start_dt"] == "0001-01-01 00:00:00"


def test_scorecards_fill_owner_ids_from_enclosing_objects():
    cards = [
        {"id": 3, "categories": [{"id": 30, "points": [{"id": 300, "score_values": [1], "max_score": "5"}]}]}
    ]
    sink, _ = transformed("scorecards", cards)
    assert sink.rows["scorecard_categories"][0]["scorecard_id"] == 3
    point = sink.rows["scorecard_points"][0]
    assert (point["scorecard_id"], point["category_id"], point["max_score"]) == (3, 30, 5)


def test_changed_categories_and_watermark_candidate():
    categories = [
        {"id": 1, "updated_at": None},
        {"id": 2, "updated_at": "2024-06-20T10:00:00.123456"},
        {"id": 3, "updated_at": "2024-06-10T10:00:00"},
    ]
    assert changed_categories(categories, None) == ([1, 2, 3], "2024-06-20T10:00:00.123456")
    assert changed_categories(categories, "2024-06-15T00:00:00.000000") == ([2], "2024-06-20T10:00:00.123456")
    assert changed_categories(categories, "2024-06-20T10:00:00.123456") == ([], "2024-06-20T10:00:00.123456")


def test_filters_are_encoded_exactly_once():
    window = day_windows(date(2024, 6, 26))[0]
    text = expression(window, "is_scored,manual")
    assert text == "date_range,2024-06-26,2024-06-26||00:00,12:00\u00b1is_scored,manual"
    assert (
        encode(text) == "date_range%2C2024-06-26%2C2024-06-26%7C%7C00%3A00%2C12%3A00%C2%B1is_scored%2Cmanual"
    )
    assert categories_filter([12, 15]) == "categories,12,15|or"
    with pytest.raises(ValueError):
        categories_filter([])


def test_windows_split_at_the_middle_minute():
    first, second = Window(date(2024, 6, 26), 0, 720).split()
    assert (first.date_range[-11:], second.date_range[-11:]) == ("00:00,06:00", "06:01,12:00")
    assert day_windows(date(2024, 6, 26))[1].date_range.endswith("||12:01,23:59")


def test_passes_cover_the_lookback_and_chunk_categories():
    passes = plan_passes(
        date(2024, 6, 26), resync=True, lookback_days=30, changed_category_ids=list(range(1, 121))
    )
    assert [p.name for p in passes] == [
        "main",
        "manual_scores",
        "categories_0",
        "categories_1",
        "categories_2",
    ]
    assert len(passes[1].windows()) == 62 and passes[1].days[0] == date(2024, 5, 27)
    assert passes[4].extra_filter == "categories," + ",".join(map(str, range(101, 121))) + "|or"
    assert [
        p.name for p in plan_passes(date(2024, 6, 26), resync=True, lookback_days=30, changed_category_ids=[])
    ] == [
        "main",
        "manual_scores",
    ]
    assert len(plan_passes(date(2024, 6, 26), resync=False, lookback_days=30, changed_category_ids=[1])) == 1


def test_every_table_has_its_key_first():
    for table in t.ALL_TABLES:
        assert table.columns[: len(table.key)] == table.key


def test_comments_are_positional_and_keep_raw_replies():
    items = [
        {"id": 1, "session_id": "other", "author_id": 4, "text": "check the refund", "comments": [{"id": 2}]},
        {"id": 3, "author_id": "x", "text": "ok", "comments": None},
    ]
    sink, _ = transformed("comments", SESSION_ID, items)
    rows = [
        (r["comment_no"], r["comment_id"], r["author_id"], r["comments"], json.loads(r["extra"]))
        for r in sink.rows["sessions_comments"]
    ]
    assert rows == [(0, 1, 4, '[{"id":2}]', {}), (1, 3, None, "null", {"author_id": "x"})]


def test_integers_beyond_the_column_type_go_to_extra_not_to_copy():
    session = {
        "id": SESSION_ID,
        "fcr": 2**31,  # integer column: one past int32
        "csi": "-2147483649",
        "nps": 2**31 - 1,
        "waiting_time": 1e20,
        "tags": [{"id": 7, "match": [{"transcript_id": 2**40}, {"transcript_id": 2**63}]}],
    }
    sink, transformer = transformed("session", session, "test")
    row = sink.rows["sessions"][0]
    assert (row["fcr"], row["csi"], row["nps"], row["waiting_time"]) == (None, None, 2**31 - 1, None)
    assert json.loads(row["extra"]) == {"fcr": 2**31, "csi": "-2147483649", "waiting_time": 1e20}
    assert transformer.warnings["sessions.fcr: uncoercible"] == 1
    tags = [(r["transcript_id"], json.loads(r["extra"])) for r in sink.rows["sessions_tags"]]
    assert tags == [(2**40, {}), (None, {"transcript_id": 2**63})]  # transcript_id is bigint


def test_integer_key_beyond_int32_is_a_clear_error():
    with pytest.raises(BadInputError, match="key field 'id' is missing or invalid"):
        transformed("session", {"id": SESSION_ID, "tags": [{"id": 2**31, "match": []}]}, "test")


@pytest.mark.parametrize("point_id", [None, "five", 2**31])
def test_point_score_without_a_usable_scorecard_point_id_is_a_clear_error(point_id):
    sheets = [{"scorecard_id": 2, "point_scores": [{"scorecard_point_id": point_id, "score": 1}]}]
    with pytest.raises(BadInputError, match=f"/sessions/{SESSION_ID}/scores: key field 'scorecard_point_id'"):
        transformed("scores", SESSION_ID, sheets)
