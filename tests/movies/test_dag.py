"""End-to-end runs of the movies DAG with ``dag.test()``: real PostgreSQL, the ES-subset server."""

from __future__ import annotations

import re
import threading
import time
import uuid

import pytest

from dev import pgdb
from etlkit.movies.index import index_body
from tests.conftest import task_states
from tests.movies.conftest import DAG_ID, es_connection, read_state, run_movies
from tests.movies.expected import expected_documents, indexed_documents, versions

pytestmark = pytest.mark.movies


def sync_metrics(dag_run) -> dict:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=DAG_ID, run_id=dag_run.run_id, task_id="sync", key="return_value")
            .one()
        )
        value = row.value
    import json

    return json.loads(value) if isinstance(value, str) else value


def try_numbers(dag_run) -> dict[str, int]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: ti.try_number for ti in dag_run.get_task_instances(session=session)}


def max_change_key(conn) -> str:
    """The largest change timestamp of any film work, its links and its linked genres and persons."""
    value = conn.execute(
        """
        SELECT GREATEST(
            (SELECT max(modified) FROM content.film_work),
            (SELECT max(created) FROM content.genre_film_work),
            (SELECT max(created) FROM content.person_film_work),
            (SELECT max(g.modified) FROM content.genre g JOIN content.genre_film_work l ON l.genre_id = g.id),
            (SELECT max(p.modified) FROM content.person p JOIN content.person_film_work l ON l.person_id = p.id))
        """
    ).fetchone()[0]
    return value.isoformat(timespec="microseconds")


def run_ok(run_dag, conf=None):
    dag_run = run_movies(run_dag, conf)
    assert dag_run.state == "success", task_states(dag_run)
    return dag_run


@pytest.mark.parametrize("major", [8, 9])
def test_first_run_indexes_one_document_per_film_as_the_source_implies(
    run_dag, airflow_conn, source_db, generated_source, es_factory, clean_state, major
):
    server = es_factory(major)
    airflow_conn("movies_postgres", pgdb.postgres_connection(source_db))
    airflow_conn("movies_elasticsearch", es_connection(server))

    run_ok(run_dag)

    cluster = server.cluster
    (physical,) = cluster.aliases["movies"]
    assert re.fullmatch(r"movies_\d{14}", physical)
    assert cluster.indices[physical].mappings == index_body()["mappings"]
    assert cluster.indices[physical].settings == index_body()["settings"]

    expected = expected_documents(generated_source)
    indexed = indexed_documents(server)
    assert len(indexed) == len(expected) == 80
    for film_id, document in expected.items():
        assert indexed[film_id] == document, film_id
        assert list(indexed[film_id]) == [
            "id", "imdb_rating", "genre", "title", "description",
            "director", "actors_names", "actors", "writers_names", "writers",
        ]  # fmt: skip
    # The generator's variety really reached the index.
    assert any(d["description"] is None for d in indexed.values())
    assert any(d["imdb_rating"] is None for d in indexed.values())
    assert any(d["genre"] == [] for d in indexed.values())
    assert any(not (d["director"] or d["actors"] or d["writers"]) for d in indexed.values())
    assert any({a["id"] for a in d["actors"]} & {w["id"] for w in d["writers"]} for d in indexed.values())

    state = read_state()
    assert state["hwm"] == max_change_key(generated_source)
    assert state["index"] == physical
    compat = {r["accept"] for r in cluster.requests if r["endpoint"] != "root"}
    assert compat == {f"application/vnd.elasticsearch+json; compatible-with={major}"}
    bulk_types = {r["content_type"] for r in cluster.requests if r["endpoint"] == "bulk"}
    assert bulk_types == {f"application/vnd.elasticsearch+x-ndjson; compatible-with={major}"}


def test_second_run_without_changes_indexes_nothing(
    run_dag, movies_connections, generated_source, clean_state
):
    run_ok(run_dag)
    before, state_before = versions(movies_connections), read_state()

    second = run_ok(run_dag)

    metrics = sync_metrics(second)
    assert metrics["extra"]["mode"] == "incremental"
    assert metrics["rows_loaded"] == 0
    assert versions(movies_connections) == before
    assert read_state()["hwm"] == state_before["hwm"]


def test_renamed_person_reindexes_exactly_their_films(
    run_dag, movies_connections, generated_source, clean_state
):
    run_ok(run_dag)
    before = versions(movies_connections)
    person_id, films = generated_source.execute(
        "SELECT person_id, array_agg(DISTINCT film_work_id) FROM content.person_film_work "
        "GROUP BY person_id ORDER BY count(DISTINCT film_work_id) DESC LIMIT 1"
    ).fetchone()
    generated_source.execute(
        "UPDATE content.person SET full_name = 'Renamed Person', modified = now() WHERE id = %s", [person_id]
    )

    run_ok(run_dag)

    after = versions(movies_connections)
    changed = {film_id for film_id in after if after[film_id] != before[film_id]}
    assert changed == {str(f) for f in films}
    indexed = indexed_documents(movies_connections)
    assert indexed == expected_documents(generated_source)
    for film in films:
        document = indexed[str(film)]
        named = document["director"] + document["actors_names"] + document["writers_names"]
        assert "Renamed Person" in named
    assert read_state()["hwm"] == max_change_key(generated_source)


def test_new_genre_link_reindexes_its_film(run_dag, movies_connections, generated_source, clean_state):
    run_ok(run_dag)
    before = versions(movies_connections)
    film_id = generated_source.execute(
        "SELECT id FROM content.film_work f WHERE NOT EXISTS "
        "(SELECT 1 FROM content.genre_film_work l WHERE l.film_work_id = f.id) LIMIT 1"
    ).fetchone()[0]
    genre_id, genre_name = generated_source.execute("SELECT id, name FROM content.genre LIMIT 1").fetchone()
    generated_source.execute(  # convention A: link rows only have `created`
        "INSERT INTO content.genre_film_work (id, genre_id, film_work_id, created) VALUES (%s, %s, %s, now())",
        [uuid.uuid4(), genre_id, film_id],
    )

    run_ok(run_dag)

    after = versions(movies_connections)
    assert {f for f in after if after[f] != before[f]} == {str(film_id)}
    assert indexed_documents(movies_connections)[str(film_id)]["genre"] == [genre_name]


def test_deleted_film_leaves_the_index_on_reconcile(
    run_dag, movies_connections, generated_source, clean_state
):
    run_ok(run_dag)
    film_id = generated_source.execute("SELECT id FROM content.film_work LIMIT 1").fetchone()[0]
    generated_source.execute("DELETE FROM content.film_work WHERE id = %s", [film_id])

    run_ok(run_dag, conf={"reconcile": True})

    indexed = indexed_documents(movies_connections)
    assert str(film_id) not in indexed
    assert indexed == expected_documents(generated_source)


def test_reconcile_restores_a_document_missing_from_the_index_and_records_when(
    run_dag, movies_connections, generated_source, clean_state
):
    from etlkit.hooks.elasticsearch import ElasticsearchClientHook

    run_ok(run_dag)
    reconciled_before = read_state()["last_reconciled_at"]
    film_id = generated_source.execute("SELECT id FROM content.film_work ORDER BY id LIMIT 1").fetchone()[0]
    with ElasticsearchClientHook("movies_elasticsearch").get_client() as client:
        # lost outside the pipeline (the ES subset serves deletes through _bulk only)
        client.bulk(operations=[{"delete": {"_index": "movies", "_id": str(film_id)}}], refresh=True)
    assert str(film_id) not in indexed_documents(movies_connections)

    run_ok(run_dag)  # incremental: the film did not change, so nothing brings it back
    assert str(film_id) not in indexed_documents(movies_connections)

    run_ok(run_dag, conf={"reconcile": True})
    assert indexed_documents(movies_connections) == expected_documents(generated_source)
    assert read_state()["last_reconciled_at"] > reconciled_before


def test_elasticsearch_down_retries_then_fails_and_next_run_catches_up(
    run_dag, movies_connections, generated_source, clean_state
):
    server = movies_connections
    run_ok(run_dag)
    state_before = read_state()
    film_id = generated_source.execute("SELECT id FROM content.film_work LIMIT 1").fetchone()[0]
    generated_source.execute(
        "UPDATE content.film_work SET title = 'Changed while ES was down', modified = now() WHERE id = %s",
        [film_id],
    )

    server.go_down()
    failed = run_movies(run_dag)
    assert failed.state == "failed"
    assert task_states(failed)["plan"] == "failed"
    assert try_numbers(failed)["plan"] > 1  # retried before failing
    assert read_state() == state_before

    server.come_up()
    run_ok(run_dag)
    assert indexed_documents(server)[str(film_id)]["title"] == "Changed while ES was down"
    assert read_state()["hwm"] > state_before["hwm"]


def test_bulk_5xx_is_retried_then_fails_with_watermark_unchanged(
    run_dag, movies_connections, generated_source, clean_state
):
    server = movies_connections
    run_ok(run_dag)
    state_before = read_state()
    generated_source.execute("UPDATE content.film_work SET modified = now() WHERE rating IS NULL")
    server.cluster.fail_next("bulk", count=1000, status=503)

    failed = run_movies(run_dag)

    assert failed.state == "failed"
    assert task_states(failed)["sync"] == "failed"
    assert try_numbers(failed)["sync"] > 1
    assert read_state() == state_before
    server.cluster.clear_faults()
    run_ok(run_dag)
    assert indexed_documents(server) == expected_documents(generated_source)


def test_one_rejected_bulk_item_fails_the_task_and_keeps_the_watermark(
    run_dag, movies_connections, generated_source, clean_state, caplog
):
    server = movies_connections
    run_ok(run_dag)
    state_before = read_state()
    film_id = str(generated_source.execute("SELECT id FROM content.film_work LIMIT 1").fetchone()[0])
    generated_source.execute(
        "UPDATE content.film_work SET title = 'Rejected once', modified = now() WHERE id = %s", [film_id]
    )
    server.cluster.fail_ids({film_id: 400})

    failed = run_movies(run_dag)

    assert failed.state == "failed"
    assert task_states(failed)["sync"] == "failed"
    assert try_numbers(failed)["sync"] == 1  # a 4xx item is not retried
    assert read_state() == state_before
    assert f"{film_id}: 400 document_parsing_exception" in caplog.text
    server.cluster.clear_faults()
    run_ok(run_dag)
    assert indexed_documents(server)[film_id]["title"] == "Rejected once"


def es_client():
    from etlkit.hooks.elasticsearch import ElasticsearchClientHook

    return ElasticsearchClientHook("movies_elasticsearch").get_client()


def test_full_refresh_swaps_the_alias_without_a_gap_and_removes_the_old_index(
    run_dag, movies_connections, generated_source, clean_state
):
    server = movies_connections
    run_ok(run_dag)
    (first_index,) = server.cluster.aliases["movies"]
    time.sleep(1.1)  # physical index names have one-second resolution
    generated_source.execute("UPDATE content.genre SET name = name || ' (renamed)' WHERE name = 'Drama'")

    gaps: list[str] = []
    answers: list[int] = []
    stop = threading.Event()
    server.cluster.requests.clear()

    def watch() -> None:
        with es_client() as client:
            while not stop.is_set():
                try:
                    answers.append(client.count(index="movies")["count"])
                except Exception as exc:
                    gaps.append(repr(exc))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        dag_run = run_ok(run_dag, conf={"full_refresh": True, "keep_previous_index": False})
    finally:
        stop.set()
        watcher.join()

    assert gaps == []
    assert len(answers) > 10 and set(answers) == {80}
    (second_index,) = server.cluster.aliases["movies"]
    assert second_index != first_index
    assert first_index not in server.cluster.indices
    assert sync_metrics(dag_run)["extra"]["mode"] == "full"
    assert [r["endpoint"] for r in server.cluster.requests].count("aliases") == 1
    assert indexed_documents(server) == expected_documents(generated_source)
    assert read_state()["index"] == second_index


def test_legacy_concrete_index_is_migrated_to_an_alias(
    run_dag, movies_connections, generated_source, clean_state
):
    server = movies_connections
    with es_client() as client:
        client.indices.create(index="movies", **index_body())
        client.index(index="movies", id="stale", document={"id": "stale", "title": "from the old pipeline"})

    run_ok(run_dag)

    (physical,) = server.cluster.aliases["movies"]
    assert re.fullmatch(r"movies_\d{14}", physical)
    assert "movies" not in server.cluster.indices
    assert indexed_documents(server) == expected_documents(generated_source)


def test_full_refresh_failing_before_the_swap_leaves_alias_and_state(
    run_dag, movies_connections, generated_source, clean_state
):
    server = movies_connections
    run_ok(run_dag)
    (old_index,), state_before = server.cluster.aliases["movies"], read_state()
    time.sleep(1.1)
    film_id = str(generated_source.execute("SELECT id FROM content.film_work LIMIT 1").fetchone()[0])
    server.cluster.fail_ids({film_id: 400})

    failed = run_movies(run_dag, {"full_refresh": True})

    assert failed.state == "failed" and task_states(failed)["sync"] == "failed"
    assert server.cluster.aliases["movies"] == {old_index}
    assert read_state() == state_before
    server.cluster.clear_faults()
    time.sleep(1.1)
    run_ok(run_dag, conf={"full_refresh": True})
    (new_index,) = server.cluster.aliases["movies"]
    assert new_index != old_index
    assert set(server.cluster.indices) == {old_index, new_index}  # half-built index swept, previous kept


def test_deleted_alias_with_a_stored_hwm_rebuilds_in_full(
    run_dag, movies_connections, generated_source, clean_state
):
    server = movies_connections
    run_ok(run_dag)
    (first_index,) = server.cluster.aliases["movies"]
    with es_client() as client:
        client.indices.delete(index=first_index)  # takes the alias with it
    time.sleep(1.1)

    dag_run = run_ok(run_dag)

    assert sync_metrics(dag_run)["extra"]["mode"] == "full"
    assert "target index missing" in sync_metrics(dag_run)["extra"]["reason"]
    assert indexed_documents(server) == expected_documents(generated_source)


def test_missing_modified_column_fails_plan_at_once(
    run_dag, movies_connections, generated_source, clean_state
):
    failed = run_movies(run_dag, {"modified_column": "updated_at"})

    assert failed.state == "failed"
    assert task_states(failed)["plan"] == "failed"
    assert try_numbers(failed)["plan"] == 1
    assert read_state() is None


def test_a_run_conf_with_a_former_connection_param_or_a_typo_fails_plan_at_once(
    run_dag, movies_connections, generated_source, clean_state, caplog
):
    failed = run_movies(run_dag, {"pg_conn_id": "another_postgres"})

    assert failed.state == "failed"
    assert task_states(failed)["plan"] == "failed"
    assert try_numbers(failed)["plan"] == 1
    assert "pg_conn_id are no longer run Params" in caplog.text
    assert read_state() is None and not movies_connections.cluster.indices

    misspelt = run_movies(run_dag, {"full_refesh": True})

    assert misspelt.state == "failed" and try_numbers(misspelt)["plan"] == 1
    assert "unknown keys ['full_refesh']" in caplog.text


def test_postgres_dropping_mid_stream_is_retried_on_a_fresh_connection(
    run_dag, movies_connections, generated_source, clean_state, monkeypatch
):
    import psycopg

    from etlkit.movies import sync

    real_stream = sync.stream_film_rows
    connections: list[int] = []

    def dropping_stream(conn, *args, **kwargs):
        connections.append(id(conn))
        for n, row in enumerate(real_stream(conn, *args, **kwargs)):
            if len(connections) == 1 and n == 30:
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            yield row

    monkeypatch.setattr(sync, "stream_film_rows", dropping_stream)
    dag_run = run_ok(run_dag)

    assert try_numbers(dag_run)["sync"] == 2
    assert len(set(connections)) == 2  # the retry did not reuse the broken connection
    assert indexed_documents(movies_connections) == expected_documents(generated_source)
    assert read_state()["hwm"] == max_change_key(generated_source)


def test_crash_after_the_alias_swap_reruns_publish_idempotently(
    run_dag, movies_connections, generated_source, clean_state, monkeypatch
):
    from etlkit.common.errors import InjectedFault
    from etlkit.movies import sync

    server = movies_connections
    run_ok(run_dag)
    (old_index,) = server.cluster.aliases["movies"]
    time.sleep(1.1)
    real_sweep = sync.sweep_old_indices
    calls: list[int] = []

    def crash_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise InjectedFault("worker died after the swap")
        return real_sweep(*args, **kwargs)

    monkeypatch.setattr(sync, "sweep_old_indices", crash_once)
    dag_run = run_ok(run_dag, conf={"full_refresh": True})

    assert try_numbers(dag_run)["publish"] == 2
    (new_index,) = server.cluster.aliases["movies"]
    assert new_index != old_index and set(server.cluster.indices) == {old_index, new_index}
    assert read_state()["index"] == new_index
    assert indexed_documents(server) == expected_documents(generated_source)


def test_dag_retry_settings_of_the_spec(dag_bag, monkeypatch):
    """§8: five task retries, 30 s doubling up to 10 min (the suite's fast-retry Variable removed)."""
    from datetime import timedelta

    from airflow.sdk.definitions.retry_policy import RetryAction

    from etlkit.common.errors import TransientError

    monkeypatch.delenv("AIRFLOW_VAR_ETL_RETRY_POLICY", raising=False)
    dag = dag_bag.get_dag(DAG_ID)
    for task in dag.tasks:
        assert task.retries == 5, task.task_id
    decisions = [dag.get_task("sync").retry_policy.evaluate(TransientError("503"), n, 5) for n in range(1, 7)]
    assert [d.action for d in decisions] == [RetryAction.RETRY] * 5 + [RetryAction.FAIL]
    assert [d.retry_delay for d in decisions[:5]] == [timedelta(seconds=s) for s in (30, 60, 120, 240, 480)]


def test_refused_credentials_fail_at_once_and_the_password_stays_out_of_the_logs(
    run_dag, airflow_conn, source_db, generated_source, es_server, clean_state, caplog
):
    es_server.cluster.require_basic_auth("elastic", "right-pass-42")
    airflow_conn("movies_postgres", pgdb.postgres_connection(source_db))
    airflow_conn(
        "movies_elasticsearch", {**es_connection(es_server), "login": "elastic", "password": "wr0ng-pass-17"}
    )

    failed = run_movies(run_dag)

    assert failed.state == "failed"
    assert task_states(failed)["plan"] == "failed"
    assert try_numbers(failed)["plan"] == 1  # not retried: a retry meets the same 401
    assert "refused a request of connection 'movies_elasticsearch' with 401" in caplog.text
    assert "login/password or api_key" in caplog.text
    assert "wr0ng-pass-17" not in caplog.text
    assert read_state() is None and not es_server.cluster.indices

    airflow_conn(
        "movies_elasticsearch", {**es_connection(es_server), "login": "elastic", "password": "right-pass-42"}
    )
    run_ok(run_dag)
    assert indexed_documents(es_server) == expected_documents(generated_source)


def test_a_bulk_request_over_the_server_limit_fails_at_once_naming_the_param(
    run_dag, movies_connections, generated_source, clean_state, caplog
):
    server = movies_connections
    run_ok(run_dag)
    state_before = read_state()
    generated_source.execute("UPDATE content.film_work SET modified = now()")
    server.cluster.max_content_length = 8_000  # well below the 80 films in one chunk

    failed = run_movies(run_dag)

    assert failed.state == "failed"
    assert task_states(failed)["sync"] == "failed"
    assert try_numbers(failed)["sync"] == 1
    assert "with 413" in caplog.text and "lower bulk_chunk_bytes" in caplog.text
    assert read_state() == state_before

    run_ok(run_dag, {"bulk_chunk_bytes": 6_000})  # the remedy the message names
    assert indexed_documents(server) == expected_documents(generated_source)
    assert read_state()["hwm"] > state_before["hwm"]


def test_an_alias_over_several_indices_fails_plan_at_once_and_touches_nothing(
    run_dag, movies_connections, generated_source, clean_state, caplog
):
    server = movies_connections
    run_ok(run_dag)
    (physical,), state_before = server.cluster.aliases["movies"], read_state()
    with es_client() as client:
        client.indices.create(index="movies_20000101000000", **index_body())
        client.indices.update_aliases(
            actions=[{"add": {"index": "movies_20000101000000", "alias": "movies"}}]
        )

    failed = run_movies(run_dag)

    assert failed.state == "failed"
    assert task_states(failed)["plan"] == "failed"
    assert try_numbers(failed)["plan"] == 1
    assert "alias 'movies' points to several indices" in caplog.text
    assert server.cluster.aliases["movies"] == {physical, "movies_20000101000000"}
    assert read_state() == state_before


def test_target_mappings_that_differ_from_the_contract_switch_to_full_mode(
    run_dag, movies_connections, generated_source, clean_state
):
    server = movies_connections
    run_ok(run_dag)
    (contract_index,) = server.cluster.aliases["movies"]
    drifted = index_body()
    drifted["mappings"]["properties"]["title"] = {"type": "keyword"}  # someone changed the index by hand
    with es_client() as client:
        client.indices.create(index="movies_20000101000000", **drifted)
        client.indices.update_aliases(
            actions=[
                {"remove": {"index": contract_index, "alias": "movies"}},
                {"add": {"index": "movies_20000101000000", "alias": "movies"}},
            ]
        )
    time.sleep(1.1)  # physical index names have one-second resolution

    dag_run = run_ok(run_dag)

    assert sync_metrics(dag_run)["extra"]["mode"] == "full"
    assert sync_metrics(dag_run)["extra"]["reason"] == "target mappings differ from the contract"
    (rebuilt,) = server.cluster.aliases["movies"]
    assert rebuilt not in {contract_index, "movies_20000101000000"}
    assert server.cluster.indices[rebuilt].mappings == index_body()["mappings"]
    assert indexed_documents(server) == expected_documents(generated_source)


def test_throttled_items_are_retried_inside_the_task_and_the_run_succeeds(
    run_dag, movies_connections, generated_source, clean_state
):
    server = movies_connections
    run_ok(run_dag)
    film_id = str(generated_source.execute("SELECT id FROM content.film_work LIMIT 1").fetchone()[0])
    generated_source.execute(
        "UPDATE content.film_work SET title = 'Throttled twice', modified = now() WHERE id = %s", [film_id]
    )
    server.cluster.fail_ids({film_id: 429}, times=2)
    server.cluster.requests.clear()

    dag_run = run_ok(run_dag)

    assert try_numbers(dag_run)["sync"] == 1  # the helper's bounded 429 retry, not Airflow's
    assert [r["endpoint"] for r in server.cluster.requests].count("bulk") == 3
    assert indexed_documents(server)[film_id]["title"] == "Throttled twice"
    assert read_state()["hwm"] == max_change_key(generated_source)


def test_a_film_deleted_between_two_tries_of_a_full_sync_is_not_published(
    run_dag, movies_connections, generated_source, clean_state, monkeypatch
):
    import psycopg

    from etlkit.movies import sync

    server = movies_connections
    real_stream = sync.stream_film_rows
    calls: list[str] = []

    def stream_then_delete_the_first_film(conn, *args, **kwargs):
        for n, row in enumerate(real_stream(conn, *args, **kwargs)):
            if not calls and n == 0:
                calls.append(row.id)
            elif calls and len(calls) == 1 and n == 30:
                with psycopg.connect(pgdb.dsn(generated_source.info.dbname), autocommit=True) as other:
                    other.execute("DELETE FROM content.film_work WHERE id = %s", [calls[0]])
                calls.append("deleted")
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            yield row

    monkeypatch.setattr(sync, "stream_film_rows", stream_then_delete_the_first_film)
    dag_run = run_ok(run_dag, {"bulk_chunk_docs": 10})

    assert try_numbers(dag_run)["sync"] == 2
    assert sync_metrics(dag_run)["extra"]["mode"] == "full"
    indexed = indexed_documents(server)
    assert str(calls[0]) not in indexed  # the first try indexed it; the published index must not hold it
    assert indexed == expected_documents(generated_source)


def _film_ids(conn, count: int) -> list[str]:
    """The films with the oldest change timestamps: none of them holds the stored high-water mark."""
    rows = conn.execute("SELECT id FROM content.film_work ORDER BY modified LIMIT %s", [count]).fetchall()
    return [str(film_id) for (film_id,) in rows]


def test_a_film_dated_in_the_future_does_not_hold_back_later_changes(
    run_dag, movies_connections, generated_source, clean_state, caplog
):
    from datetime import datetime

    server = movies_connections
    run_ok(run_dag)
    future_id, ordinary_id = _film_ids(generated_source, 2)
    generated_source.execute(
        "UPDATE content.film_work SET title = 'From the future', modified = now() + interval '30 days' "
        "WHERE id = %s",
        [future_id],
    )

    run_ok(run_dag)

    source_now = generated_source.execute("SELECT clock_timestamp()").fetchone()[0]
    assert datetime.fromisoformat(read_state()["hwm"]) <= source_now  # capped at the snapshot, not +30 days
    assert indexed_documents(server)[future_id]["title"] == "From the future"
    assert "1 film work(s) have a change timestamp after the source's clock" in caplog.text
    assert f"first ids: {future_id}" in caplog.text
    before = versions(server)
    generated_source.execute(
        "UPDATE content.film_work SET title = 'Ordinary change', modified = now() WHERE id = %s",
        [ordinary_id],
    )

    run_ok(run_dag)

    assert indexed_documents(server)[ordinary_id]["title"] == "Ordinary change"
    after = versions(server)
    assert {f for f in after if after[f] != before[f]} == {ordinary_id}  # the future film is not rewritten
    assert indexed_documents(server) == expected_documents(generated_source)


def _freeze_operator_clock(monkeypatch, frozen):
    from datetime import datetime

    from etlkit.operators import movies as operators

    class FrozenClock(datetime):
        @classmethod
        def now(cls, tz=None):
            return frozen if tz is None else frozen.astimezone(tz)

    monkeypatch.setattr(operators, "datetime", FrozenClock)


def test_a_taken_index_name_makes_plan_pick_the_next_one(
    run_dag, movies_connections, generated_source, clean_state, monkeypatch
):
    from datetime import UTC, datetime

    server = movies_connections
    frozen = datetime.now(UTC).replace(microsecond=0)
    _freeze_operator_clock(monkeypatch, frozen)
    taken = f"movies_{frozen:%Y%m%d%H%M%S}"
    with es_client() as client:  # e.g. left by another run's try in the same second
        client.indices.create(index=taken, **index_body())

    dag_run = run_ok(run_dag)

    assert try_numbers(dag_run)["plan"] == 1
    (physical,) = server.cluster.aliases["movies"]
    assert physical == "movies_" + datetime.fromtimestamp(frozen.timestamp() + 1, UTC).strftime(
        "%Y%m%d%H%M%S"
    )
    assert taken not in server.cluster.indices  # an unpublished index, swept after the swap
    assert indexed_documents(server) == expected_documents(generated_source)


def test_plan_retried_after_a_crash_right_after_creating_its_index_picks_a_new_name(
    run_dag, movies_connections, generated_source, clean_state, monkeypatch
):
    from datetime import UTC, datetime

    from etlkit.movies import sync, target

    server = movies_connections
    frozen = datetime.now(UTC).replace(microsecond=0)
    _freeze_operator_clock(monkeypatch, frozen)  # the retry comes within the same second
    real_create = target.create_physical_index
    created: list[str] = []

    def create_then_lose_the_answer(client, name):
        real_create(client, name)
        created.append(name)
        if len(created) == 1:
            raise ConnectionError("connection reset after the index was created")

    monkeypatch.setattr(target, "create_physical_index", create_then_lose_the_answer)
    monkeypatch.setattr(sync, "create_physical_index", create_then_lose_the_answer, raising=False)

    dag_run = run_ok(run_dag)

    assert try_numbers(dag_run)["plan"] == 2
    (physical,) = server.cluster.aliases["movies"]
    assert created == [f"movies_{frozen:%Y%m%d%H%M%S}", physical] and physical > created[0]
    assert set(server.cluster.indices) == {physical}
    assert indexed_documents(server) == expected_documents(generated_source)


def run_summaries(dag_run) -> list[tuple[str, dict]]:
    """``(task_id, value)`` of every ``run_summary`` XCom of the run."""
    import json

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(XComModel).filter_by(dag_id=DAG_ID, run_id=dag_run.run_id, key="run_summary").all()
        )
        return [
            (row.task_id, json.loads(row.value) if isinstance(row.value, str) else row.value) for row in rows
        ]


def metrics_lines(caplog) -> list[dict]:
    import json

    return [
        json.loads(record.getMessage().removeprefix("ETL_METRICS "))
        for record in caplog.records
        if record.getMessage().startswith("ETL_METRICS ")
    ]


def test_one_run_summary_with_an_insert_a_delete_and_a_rejected_document(
    run_dag, movies_connections, generated_source, clean_state, caplog
):
    import logging

    caplog.set_level(logging.INFO, logger="etlkit.metrics")
    server = movies_connections
    run_ok(run_dag)
    hwm_before = read_state()["hwm"]
    deleted_id, rejected_id = _film_ids(generated_source, 2)
    inserted_id = str(uuid.uuid4())
    generated_source.execute(
        "INSERT INTO content.film_work (id, title, type, created, modified) "
        "VALUES (%s, 'Inserted', 'movie', now(), now())",
        [inserted_id],
    )
    generated_source.execute("DELETE FROM content.film_work WHERE id = %s", [deleted_id])
    generated_source.execute(
        "UPDATE content.film_work SET title = 'Rejected', modified = now() WHERE id = %s", [rejected_id]
    )
    server.cluster.fail_ids({rejected_id: 400})
    caplog.clear()
    conf = {"reconcile": True, "overlap_seconds": 0}

    failed = run_movies(run_dag, conf)

    assert failed.state == "failed" and task_states(failed)["sync"] == "failed"
    ((task_id, summary),) = run_summaries(failed)
    assert metrics_lines(caplog) == [{**summary, "run_id": failed.run_id, "task": "sync"}]
    assert task_id == "sync"
    # read: the film holding the HWM (re-read at overlap 0, unchanged), the insert, the rejected update
    assert (summary["rows_read"], summary["rows_loaded"], summary["rows_rejected"]) == (3, 1, 1)
    extra = summary["extra"]
    assert (extra["mode"], extra["outcome"], extra["failed_task"]) == ("incremental", "failed", "sync")
    assert extra["deleted"] == 0 and extra["reconciled"] is False  # reconcile never ran
    assert extra["hwm_before"] == extra["hwm_after"] == hwm_before == read_state()["hwm"]

    server.cluster.clear_faults()
    caplog.clear()
    dag_run = run_ok(run_dag, conf)

    ((task_id, summary),) = run_summaries(dag_run)
    assert metrics_lines(caplog) == [{**summary, "run_id": dag_run.run_id, "task": "reconcile"}]
    assert task_id == "reconcile"
    # the same three rows; the unchanged HWM film is skipped, the insert and the fixed update are indexed
    assert (summary["rows_read"], summary["rows_loaded"], summary["rows_rejected"]) == (3, 2, 0)
    extra = summary["extra"]
    assert (extra["mode"], extra["outcome"], extra["deleted"]) == ("incremental", "success", 1)
    assert extra["hwm_before"] == hwm_before
    assert extra["hwm_after"] == read_state()["hwm"] == max_change_key(generated_source)
    assert indexed_documents(server) == expected_documents(generated_source)
