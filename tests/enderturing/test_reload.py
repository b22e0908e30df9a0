"""Re-loads skip unchanged sessions before the transform; what they load is what a full load would."""

from __future__ import annotations

import copy
from datetime import date
from pathlib import Path

import psycopg
import pytest

from dev.enderturing_server import generate_dataset
from etlkit.enderturing import changes, load, staging
from etlkit.enderturing import tables as t

pytestmark = pytest.mark.enderturing

SCHEMA = "enderturing"


def stage(directory: Path, sessions: list[dict], scores: dict, summaries: dict) -> Path:
    """The staged files sync_sessions writes: the batch's listing items and its detail bodies."""
    directory.mkdir(parents=True)
    with (directory / staging.SESSIONS_FILE).open("w") as out:
        staging.write_ndjson(out, sessions)
    records = [{"session_id": k, "endpoint": "scores", "body": v} for k, v in scores.items()]
    records += [{"session_id": k, "endpoint": "summary", "body": v} for k, v in summaries.items()]
    with (directory / staging.DETAILS_FILE).open("w") as out:
        staging.write_ndjson(out, records)
    return directory


def rows_with_loaded_at(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    """Every session table's rows, etl_loaded_at included, sorted."""
    result = {}
    for table in t.SESSION_TABLES:
        columns = ", ".join(f"{c}::text" for c in (*table.columns, "etl_loaded_at"))
        result[table.name] = sorted(conn.execute(f"SELECT {columns} FROM {SCHEMA}.{table.name}").fetchall())  # noqa: S608
    return result


@pytest.fixture
def batch(tmp_path):
    dataset = generate_dataset([date(2024, 6, 26)], 60, seed=5)
    return dataset, tmp_path


def load_batch(warehouse, directory: Path) -> load.SessionBatchLoad:
    return load.load_session_batch(warehouse, SCHEMA, directory, workers=1, expected_sessions=None)


def test_unchanged_reload_skips_every_session_and_leaves_every_row_identical(warehouse, batch):
    dataset, tmp = batch
    load.ensure_schema(warehouse, SCHEMA)
    first = load_batch(warehouse, stage(tmp / "one", dataset.sessions, dataset.scores, dataset.summaries))
    assert (first.sessions, first.unchanged) == (60, 0)
    assert {r.table: r.inserted for r in first.tables}["sessions"] == 60
    before = rows_with_loaded_at(warehouse)

    again = load_batch(warehouse, stage(tmp / "two", dataset.sessions, dataset.scores, dataset.summaries))
    assert (again.sessions, again.unchanged) == (60, 60)
    assert all(r.staged == r.inserted == r.updated == 0 for r in again.tables)
    assert rows_with_loaded_at(warehouse) == before


def test_changed_sessions_and_details_are_reloaded_the_others_skipped(warehouse, batch):
    dataset, tmp = batch
    load.ensure_schema(warehouse, SCHEMA)
    load_batch(warehouse, stage(tmp / "one", dataset.sessions, dataset.scores, dataset.summaries))
    before = rows_with_loaded_at(warehouse)

    sessions = copy.deepcopy(dataset.sessions)
    tagged = next(s for s in sessions if len(s["tags"]) >= 2)
    dropped_tag = tagged["tags"].pop()["id"]
    summarised = next(s for s in sessions if s is not tagged and dataset.summaries[s["id"]])
    summaries = copy.deepcopy(dataset.summaries)
    summaries[summarised["id"]][0]["text"] = "a new summary"
    again = load_batch(warehouse, stage(tmp / "two", sessions, dataset.scores, summaries))

    assert again.unchanged == 58
    tags = {
        r[0]
        for r in warehouse.execute(
            "SELECT tag_id FROM enderturing.sessions_tags WHERE session_id = %s", (tagged["id"],)
        )
    }
    assert dropped_tag not in tags and tags == {tag["id"] for tag in tagged["tags"]}
    text = warehouse.execute(
        f"SELECT text FROM {SCHEMA}.sessions_summaries WHERE session_id = %s AND summary_no = 0",  # noqa: S608
        (summarised["id"],),
    ).fetchone()[0]
    assert text == "a new summary"
    after = rows_with_loaded_at(warehouse)
    changed = {tagged["id"], summarised["id"]}
    for table in t.SESSION_TABLES:
        assert [r for r in after[table.name] if r[0] not in changed] == [
            r for r in before[table.name] if r[0] not in changed
        ], table.name
    # The changed sessions' rows that did not change keep their etl_loaded_at too.
    session_rows = {r[0]: r for r in after["sessions"]}
    assert session_rows[summarised["id"]] == {r[0]: r for r in before["sessions"]}[summarised["id"]]


def test_scores_removed_with_the_reviewers_come_back_with_them(warehouse, batch):
    """A session's scores are replaced by its listing item (no reviewers: no scores); its detail
    digest alone must never skip them."""
    dataset, tmp = batch
    load.ensure_schema(warehouse, SCHEMA)
    reviewed = next(s for s in dataset.sessions if s["reviewers"] and dataset.scores[s["id"]])
    count = f"SELECT count(*) FROM {SCHEMA}.sessions_scores WHERE session_id = %s"  # noqa: S608
    load_batch(warehouse, stage(tmp / "one", dataset.sessions, dataset.scores, dataset.summaries))
    scored = warehouse.execute(count, (reviewed["id"],)).fetchone()[0]
    assert scored > 0

    sessions = copy.deepcopy(dataset.sessions)
    next(s for s in sessions if s["id"] == reviewed["id"])["reviewers"] = []
    scores = {k: v for k, v in dataset.scores.items() if k != reviewed["id"]}  # not called without reviewers
    load_batch(warehouse, stage(tmp / "two", sessions, scores, dataset.summaries))
    assert warehouse.execute(count, (reviewed["id"],)).fetchone()[0] == 0

    third = load_batch(warehouse, stage(tmp / "three", dataset.sessions, dataset.scores, dataset.summaries))
    assert third.unchanged == 59
    assert warehouse.execute(count, (reviewed["id"],)).fetchone()[0] == scored


def test_a_session_whose_row_was_deleted_by_hand_is_loaded_again(warehouse, batch):
    dataset, tmp = batch
    load.ensure_schema(warehouse, SCHEMA)
    load_batch(warehouse, stage(tmp / "one", dataset.sessions, dataset.scores, dataset.summaries))
    before = rows_with_loaded_at(warehouse)
    gone = dataset.sessions[0]["id"]
    warehouse.execute(f"DELETE FROM {SCHEMA}.sessions WHERE id = %s", (gone,))  # noqa: S608

    # Its children are still there: the COPY of the "new" session collides and takes the upsert path.
    again = load_batch(warehouse, stage(tmp / "two", dataset.sessions, dataset.scores, dataset.summaries))
    assert again.unchanged == 59
    after = rows_with_loaded_at(warehouse)
    assert len(after["sessions"]) == 60
    for table in t.SESSION_TABLES[1:]:
        assert after[table.name] == before[table.name], table.name  # unchanged children kept as they were


def test_a_version_1_warehouse_gets_the_digest_table_and_reloads_keep_etl_loaded_at(warehouse, batch):
    dataset, tmp = batch
    load.ensure_schema(warehouse, SCHEMA)
    load_batch(warehouse, stage(tmp / "one", dataset.sessions, dataset.scores, dataset.summaries))
    before = rows_with_loaded_at(warehouse)
    # What a warehouse loaded before migration 002 looks like.
    warehouse.execute("DROP TABLE enderturing.etl_session_sources")
    warehouse.execute("DELETE FROM enderturing.etl_schema_version WHERE version = 2")

    load.ensure_schema(warehouse, SCHEMA)
    versions = [
        r[0] for r in warehouse.execute("SELECT version FROM enderturing.etl_schema_version ORDER BY 1")
    ]
    assert versions == [1, 2]
    again = load_batch(warehouse, stage(tmp / "two", dataset.sessions, dataset.scores, dataset.summaries))
    assert again.unchanged == 0  # no digests yet: every session is compared row by row in the upsert
    assert all(r.inserted == r.updated == 0 for r in again.tables)
    assert rows_with_loaded_at(warehouse) == before
    third = load_batch(warehouse, stage(tmp / "three", dataset.sessions, dataset.scores, dataset.summaries))
    assert third.unchanged == 60


def test_digests_follow_the_content_and_the_row_code_not_the_order_of_details(
    warehouse, tmp_path, monkeypatch
):
    dataset = generate_dataset([date(2024, 6, 26)], 5, seed=3)
    load.ensure_schema(warehouse, SCHEMA)
    load_batch(warehouse, stage(tmp_path / "one", dataset.sessions, dataset.scores, dataset.summaries))
    before = rows_with_loaded_at(warehouse)

    shuffled = stage(tmp_path / "shuffled", dataset.sessions, dataset.scores, dataset.summaries)
    lines = (shuffled / staging.DETAILS_FILE).read_text().splitlines()
    (shuffled / staging.DETAILS_FILE).write_text("\n".join(reversed(lines)) + "\n")
    assert load_batch(warehouse, shuffled).unchanged == 5

    monkeypatch.setattr(changes, "code_version", lambda: b"another transform")
    recoded = load_batch(
        warehouse, stage(tmp_path / "recoded", dataset.sessions, dataset.scores, dataset.summaries)
    )
    assert recoded.unchanged == 0 and all(r.inserted == r.updated == 0 for r in recoded.tables)
    assert rows_with_loaded_at(warehouse) == before

    summaries = copy.deepcopy(dataset.summaries)
    first_id = dataset.sessions[0]["id"]
    summaries[first_id] = None  # the summary call answered null: no summaries any more
    other = load_batch(warehouse, stage(tmp_path / "other", dataset.sessions, dataset.scores, summaries))
    assert other.unchanged == 4
    left = warehouse.execute(
        "SELECT count(*) FROM enderturing.sessions_summaries WHERE session_id = %s", (first_id,)
    ).fetchone()[0]
    assert left == 0


def test_a_batch_of_new_changed_and_unchanged_sessions_loads_each_the_right_way(warehouse, batch):
    dataset, tmp = batch
    load.ensure_schema(warehouse, SCHEMA)
    old, fresh = dataset.sessions[:40], dataset.sessions[40:]
    load_batch(warehouse, stage(tmp / "one", old, dataset.scores, dataset.summaries))
    sessions = copy.deepcopy(dataset.sessions)
    sessions[0]["crm_statuses"] = ["reopened"]
    mixed = load_batch(warehouse, stage(tmp / "two", sessions, dataset.scores, dataset.summaries))
    assert (mixed.sessions, mixed.unchanged) == (60, 39)
    counts = {r.table: (r.inserted, r.updated) for r in mixed.tables}
    assert counts["sessions"] == (len(fresh), 0)  # the changed session's own row did not change
    statuses = warehouse.execute(
        "SELECT crm_status FROM enderturing.sessions_crm_statuses WHERE session_id = %s", (sessions[0]["id"],)
    ).fetchall()
    assert statuses == [("reopened",)]
    reference = tmp / "reference"
    # The same final state as one load of the whole batch into an empty warehouse.
    after = {name: [r[:-1] for r in rows] for name, rows in rows_with_loaded_at(warehouse).items()}
    warehouse.execute("DROP SCHEMA enderturing CASCADE")
    load.ensure_schema(warehouse, SCHEMA)
    load_batch(warehouse, stage(reference, sessions, dataset.scores, dataset.summaries))
    assert after == {name: [r[:-1] for r in rows] for name, rows in rows_with_loaded_at(warehouse).items()}


def test_ids_in_other_spellings_or_positions_are_compared_as_uuids(warehouse, tmp_path):
    """Session ids that are not the line's first key, or not in canonical form, take the decoder
    and the UUID parser; the batch is still skipped on its second load."""
    dataset = generate_dataset([date(2024, 6, 26)], 6, seed=9)
    sessions = copy.deepcopy(dataset.sessions)
    for number, session in enumerate(sessions):
        raw_id = session.pop("id")
        spelled = raw_id.upper() if number % 2 else raw_id
        sessions[number] = {"type": session.pop("type"), "id": spelled, **session}  # id not first
    scores = {k.upper(): v for k, v in dataset.scores.items()}
    load.ensure_schema(warehouse, SCHEMA)

    def staged(name: str) -> Path:
        directory = stage(tmp_path / name, sessions, {}, dataset.summaries)
        with (directory / staging.DETAILS_FILE).open("a") as out:  # details name the ids as listed
            listed = {s["id"].lower(): s["id"] for s in sessions}
            staging.write_ndjson(
                out,
                [
                    {"session_id": listed[k.lower()], "endpoint": "scores", "body": v}
                    for k, v in scores.items()
                ],
            )
        return directory

    first = load_batch(warehouse, staged("one"))
    assert first.unchanged == 0 and {r.table: r.inserted for r in first.tables}["sessions"] == 6
    again = load_batch(warehouse, staged("two"))
    assert again.unchanged == 6
