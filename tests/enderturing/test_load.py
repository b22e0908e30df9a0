"""The bulk loader against real PostgreSQL: DDL agrees with the code, bounded statements, replacement."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from etlkit.common.errors import BadInputError
from etlkit.enderturing import load
from etlkit.enderturing import tables as t
from etlkit.enderturing.staging import CopySpool

pytestmark = pytest.mark.enderturing


class CountingConnection:
    """Forwards to a psycopg connection and counts statements (execute + COPY)."""

    def __init__(self, conn):
        self._conn = conn
        self.statements = 0

    def execute(self, *args, **kwargs):
        self.statements += 1
        return self._conn.execute(*args, **kwargs)

    def cursor(self, *args, **kwargs):
        self.statements += 1  # the loader opens a cursor only for one COPY
        return self._conn.cursor(*args, **kwargs)

    def transaction(self):
        return self._conn.transaction()


def test_ddl_matches_the_table_definitions(warehouse):
    load.ensure_schema(warehouse, "enderturing")
    load.ensure_schema(warehouse, "enderturing")  # idempotent
    for table in t.ALL_TABLES:
        columns = [
            r[0]
            for r in warehouse.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'enderturing' "
                "AND table_name = %s ORDER BY ordinal_position",
                (table.name,),
            )
        ]
        assert sorted(columns) == sorted((*table.columns, "etl_loaded_at")), table.name
        key = [
            r[0]
            for r in warehouse.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
                (f"enderturing.{table.name}",),
            )
        ]
        assert sorted(key) == sorted(table.key), table.name


def _spool_tags(directory, sessions: int, per_session: int) -> CopySpool:
    with CopySpool(directory) as spool:
        for _ in range(sessions):
            session_id = str(uuid.uuid4())
            spool.replace(t.SESSIONS_TAGS, session_id)
            for match_no in range(per_session):
                spool.add(
                    t.SESSIONS_TAGS,
                    (session_id, 1, match_no, 0.5, "text\twith tab", True, 10**10, "q", "{}", "{}"),
                )
    return spool


@pytest.mark.parametrize("rows", [10, 10_000])
def test_statement_count_does_not_grow_with_rows(warehouse, tmp_path, rows):
    load.ensure_schema(warehouse, "enderturing")
    spool = _spool_tags(tmp_path, rows // 10, 10)
    counting = CountingConnection(warehouse)
    [result] = load.load_tables(counting, "enderturing", [t.SESSIONS_TAGS], [spool], load.SESSIONS_LOCK_KEY)
    assert (result.staged, result.inserted, result.updated) == (rows, rows, 0)
    # lock, settings, stage, copy, analyze, replace set, its copy, delete, upsert, one orphan check
    assert counting.statements == 10
    assert result.orphans == {"tag_id->tags": rows}  # no tags loaded: every row is a (soft) orphan
    assert warehouse.execute("SELECT count(*) FROM enderturing.sessions_tags").fetchone()[0] == rows
    text = warehouse.execute("SELECT matched_corpus_text FROM enderturing.sessions_tags LIMIT 1").fetchone()[
        0
    ]
    assert text == "text\twith tab"


def test_a_key_staged_twice_fails_the_load_and_writes_nothing(warehouse, tmp_path):
    load.ensure_schema(warehouse, "enderturing")
    session_id = str(uuid.uuid4())
    with CopySpool(tmp_path) as spool:
        spool.add(t.SESSIONS_CRM_STATUSES, (session_id, "won", "{}"))
        spool.add(t.SESSIONS_CRM_STATUSES, (session_id, "won", '{"again": true}'))
    with pytest.raises(BadInputError, match=r"sessions_crm_statuses: the batch holds a key more than once"):
        load.load_tables(warehouse, "enderturing", [t.SESSIONS_CRM_STATUSES], [spool], load.SESSIONS_LOCK_KEY)
    assert warehouse.execute("SELECT count(*) FROM enderturing.sessions_crm_statuses").fetchone()[0] == 0


def test_second_load_updates_only_changed_rows(warehouse, tmp_path):
    load.ensure_schema(warehouse, "enderturing")
    first, second = str(uuid.uuid4()), str(uuid.uuid4())

    def spool_reviewers(directory, reviewed_at: str) -> CopySpool:
        with CopySpool(directory) as spool:
            spool.add(t.SESSIONS_REVIEWERS, (first, 7, "2024-06-26T10:00:00", "{}"))
            spool.add(t.SESSIONS_REVIEWERS, (second, 7, reviewed_at, "{}"))
        return spool

    tables = [t.SESSIONS_REVIEWERS]
    lock = load.SESSIONS_LOCK_KEY
    load.load_tables(
        warehouse, "enderturing", tables, [spool_reviewers(tmp_path / "a", "2024-06-26T11:00:00")], lock
    )
    [again] = load.load_tables(
        warehouse, "enderturing", tables, [spool_reviewers(tmp_path / "b", "2024-06-27T09:30:00")], lock
    )
    assert (again.staged, again.inserted, again.updated) == (2, 0, 1)
    reviewed = warehouse.execute(
        "SELECT last_reviewed_at::text FROM enderturing.sessions_reviewers WHERE session_id = %s", (second,)
    ).fetchone()[0]
    assert reviewed == "2024-06-27 09:30:00"


def test_replacement_removes_children_no_longer_reported(warehouse, tmp_path):
    load.ensure_schema(warehouse, "enderturing")
    kept, dropped = str(uuid.uuid4()), str(uuid.uuid4())
    with CopySpool(tmp_path / "one") as spool:
        for session_id in (kept, dropped):
            spool.replace(t.SESSIONS_CRM_STATUSES, session_id)
            spool.add(t.SESSIONS_CRM_STATUSES, (session_id, "won", "{}"))
            spool.add(t.SESSIONS_CRM_STATUSES, (session_id, "lost", "{}"))
    load.load_tables(warehouse, "enderturing", [t.SESSIONS_CRM_STATUSES], [spool], load.SESSIONS_LOCK_KEY)
    with CopySpool(tmp_path / "two") as spool:
        spool.replace(t.SESSIONS_CRM_STATUSES, dropped)
        spool.add(t.SESSIONS_CRM_STATUSES, (dropped, "won", "{}"))
    [result] = load.load_tables(
        warehouse, "enderturing", [t.SESSIONS_CRM_STATUSES], [spool], load.SESSIONS_LOCK_KEY
    )
    rows = warehouse.execute(
        "SELECT session_id::text, crm_status FROM enderturing.sessions_crm_statuses ORDER BY 1, 2"
    ).fetchall()
    assert sorted(rows) == sorted([(kept, "lost"), (kept, "won"), (dropped, "won")])
    assert (result.stale_deleted, result.inserted, result.updated) == (1, 0, 0)


def test_parallel_transform_stages_the_same_rows_as_one_process(tmp_path, monkeypatch):
    from dev.enderturing_server import generate_dataset
    from etlkit.enderturing import staging
    from etlkit.enderturing.extract import spool_sessions

    dataset = generate_dataset([date(2024, 6, 26)], 300, seed=11)
    with (tmp_path / staging.SESSIONS_FILE).open("w") as out:
        staging.write_ndjson(out, dataset.sessions)
    with (tmp_path / staging.DETAILS_FILE).open("w") as out:
        records = [{"session_id": k, "endpoint": "scores", "body": v} for k, v in dataset.scores.items()]
        staging.write_ndjson(
            out,
            records
            + [{"session_id": k, "endpoint": "summary", "body": v} for k, v in dataset.summaries.items()],
        )

    def staged_lines(batch) -> dict[str, list[str]]:
        lines: dict[str, list[str]] = {}
        for spool in batch.spools:
            for path in sorted(spool.directory.iterdir()):
                lines.setdefault(path.name, []).extend(path.read_text().splitlines())
        return {name: sorted(values) for name, values in lines.items()}

    monkeypatch.setattr("etlkit.enderturing.extract.PARALLEL_TRANSFORM_MIN_BYTES", 0)
    single = spool_sessions(tmp_path, tmp_path / "one", workers=1)
    parallel = spool_sessions(tmp_path, tmp_path / "two", workers=2)
    assert len(parallel.spools) == 2 and single.row_counts == parallel.row_counts
    assert staged_lines(single) == staged_lines(parallel)
    assert single.row_counts["sessions"] == 300


def test_integer_extremes_load_and_out_of_range_values_land_in_extra(warehouse, tmp_path):
    from etlkit.enderturing.transform import Transformer

    load.ensure_schema(warehouse, "enderturing")
    session_id = str(uuid.uuid4())
    session = {
        "id": session_id,
        "start_dt": "2024-06-26T10:00:00",
        **{name: 2**31 - 1 for name in t.SESSION_INT},
        "fcr": 2**31,
        "tags": [{"id": 1, "match": [{"transcript_id": 2**63 - 1}, {"transcript_id": 2**63}]}],
    }
    with CopySpool(tmp_path) as spool:
        Transformer(spool).session(session, "test")
    load.load_tables(warehouse, "enderturing", [t.SESSIONS, t.SESSIONS_TAGS], [spool], load.SESSIONS_LOCK_KEY)
    fcr, nps, extra = warehouse.execute(
        "SELECT fcr, nps, extra FROM enderturing.sessions WHERE id = %s", (session_id,)
    ).fetchone()
    assert (fcr, nps, extra) == (None, 2**31 - 1, {"fcr": 2**31})
    tags = warehouse.execute(
        "SELECT transcript_id, extra FROM enderturing.sessions_tags ORDER BY match_no"
    ).fetchall()
    assert tags == [(2**63 - 1, {}), (None, {"transcript_id": 2**63})]


def test_a_staged_key_missing_after_the_upsert_fails_the_load(warehouse, tmp_path, monkeypatch):
    load.ensure_schema(warehouse, "enderturing")
    spool = _spool_tags(tmp_path / "good", 3, 2)
    [result] = load.load_tables(warehouse, "enderturing", [t.SESSIONS_TAGS], [spool], load.SESSIONS_LOCK_KEY)
    assert (result.staged, result.inserted) == (6, 6)

    # An upsert that silently writes nothing (the reference's defect 3): the check must catch it.
    monkeypatch.setattr(load, "_upsert", lambda *args: (0, 0))
    with pytest.raises(load.StagedKeysMissingError, match="sessions_tags: 4 staged keys missing"):
        load.load_tables(
            warehouse,
            "enderturing",
            [t.SESSIONS_TAGS],
            [_spool_tags(tmp_path / "lost", 2, 2)],
            load.SESSIONS_LOCK_KEY,
        )
    assert warehouse.execute("SELECT count(*) FROM enderturing.sessions_tags").fetchone()[0] == 6
