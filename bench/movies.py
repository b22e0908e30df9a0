"""Benchmark of the movies full load: PostgreSQL → transform → ``_bulk`` into the local ES-subset server.

    .venv/bin/python -m bench.movies [--films 200000] [--small 50000] [--baseline-sample 5000] [--quick]

Generates the corpus with ``dev.movies_data`` (convention A), starts ``dev.es_server`` in its own
process, then runs each measured load in its own child (``bench.harness``, so each peak RSS is its own):

* ours: the DAG's own operators, outside Airflow's task runner: ``MoviesPlanOperator.execute``
  (change columns, target, mode: full, the new physical index; not timed), then the timed
  ``MoviesSyncOperator.execute`` with the deployment's default settings (server-side cursor in
  ``batch_size`` fetches → transform → ``BulkLoader`` chunks). The connections are ``AIRFLOW_CONN_*``
  environment variables, as deployments define them; the plan's result is handed to the sync
  operator as its ``plan`` argument, as the DAG wires ``plan.output`` (the task instance is a
  stand-in on try 1). Run at two corpus sizes to show memory is flat in corpus size; its peak RSS
  includes Airflow and the operator modules, as a task's does (the figure after the imports, before
  the load, is printed beside it);
* baseline: the naive loader — ``fetchall()`` of the same payload query, every document built in
  memory, then one ``PUT _doc`` per document. Its indexing is timed on the first
  ``--baseline-sample`` documents and scaled to the corpus (one request per document is linear),
  which the output says.

* floor: the part of the work no correct load avoids that can be measured alone: the payload
  rows read through the sync's own server-side cursor (``stream_film_rows``, the default
  ``batch_size``) and discarded; no transform, no indexing. It is a lower bound, not a full load.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench import harness
from dev import movies_data, pgdb
from dev.airflow_env import airflow_environment, connection_env
from dev.sshd import free_port, wait_for_port

MODULE = "bench.movies"
PG_CONN_ID = "bench_movies_postgres"
ES_CONN_ID = "bench_movies_elasticsearch"
ES_MAJOR = "9"
# What the plan resolves on the generated schema (convention A: link rows only have ``created``).
CHANGE_COLUMNS = {
    "film_work": "modified",
    "genre": "modified",
    "person": "modified",
    "genre_film_work": "created",
    "person_film_work": "created",
}


class FirstTry:
    """What the sync operator asks of its task instance: the try number."""

    try_number = 1


def worker_ours(es_url: str) -> dict:
    import elasticsearch

    from etlkit.operators.movies import MoviesPlanOperator, MoviesSyncOperator

    imports_rss = harness.peak_rss()
    ids = {"pg_conn_id": PG_CONN_ID, "es_conn_id": ES_CONN_ID}
    context = {"params": {}, "ti": FirstTry()}  # no Params: the deployment's settings
    planned = MoviesPlanOperator(task_id="plan", **ids).execute(context)
    started = time.perf_counter()
    synced = MoviesSyncOperator(task_id="sync", plan=planned, **ids).execute(context)
    seconds = time.perf_counter() - started
    index = planned["write_index"]
    with elasticsearch.Elasticsearch(es_url, request_timeout=120) as es:
        es.indices.refresh(index=index)
        count = es.count(index=index)["count"]
    return {
        "items": synced["rows_loaded"],
        "rows_read": synced["rows_read"],
        "indexed_count": count,
        "index": index,
        "seconds": seconds,
        "imports_peak_rss": imports_rss,
    }


def worker_floor(dbname: str) -> dict:
    """The payload rows read through the sync's own server-side cursor and discarded."""
    from etlkit.movies import queries
    from etlkit.movies.extract import stream_film_rows
    from etlkit.movies.settings import MoviesSettings

    query = queries.payload_query("content", CHANGE_COLUMNS, "all")
    with psycopg.connect(pgdb.dsn(dbname), options="-c TimeZone=UTC") as pg:
        started = time.perf_counter()
        rows = sum(1 for _ in stream_film_rows(pg, query, {}, MoviesSettings.resolve().batch_size))
        seconds = time.perf_counter() - started
    return {"items": rows, "seconds": seconds}


def worker_baseline(dbname: str, es_url: str, sample: int) -> dict:
    import elasticsearch

    from etlkit.movies import queries
    from etlkit.movies.extract import film_row
    from etlkit.movies.target import create_physical_index
    from etlkit.movies.transform import build_document

    index = "bench_baseline"
    pg = psycopg.connect(pgdb.dsn(dbname), options="-c TimeZone=UTC")
    es = elasticsearch.Elasticsearch(es_url, request_timeout=120)
    create_physical_index(es, index)
    started = time.perf_counter()
    with pg.cursor() as cursor:  # naive: the whole result set in memory
        cursor.execute(queries.payload_query("content", CHANGE_COLUMNS, "all"))
        rows = cursor.fetchall()
    documents = [build_document(film_row(row)) for row in rows]
    prepared = time.perf_counter() - started
    index_started = time.perf_counter()
    for document in documents[:sample]:
        es.index(index=index, id=document["id"], document=document)
    sampled = min(sample, len(documents))
    per_doc = (time.perf_counter() - index_started) / max(sampled, 1)
    es.indices.delete(index=index)
    pg.close()
    es.close()
    return {"items": len(documents), "sampled_docs": sampled, "seconds": prepared + per_doc * len(documents)}


def run_worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=f"{MODULE} --worker")
    parser.add_argument("kind", choices=["ours", "baseline", "floor"])
    parser.add_argument("--db")
    parser.add_argument("--es-url")
    parser.add_argument("--sample", type=int)
    args = parser.parse_args(argv)
    if args.kind == "ours":
        harness.child_result(worker_ours(args.es_url))
    elif args.kind == "floor":
        harness.child_result(worker_floor(args.db))
    else:
        harness.child_result(worker_baseline(args.db, args.es_url, args.sample))


def prepare(films: int) -> str:
    dbname = f"etl_movies_bench_{films}"
    pgdb.recreate_database(dbname)
    started = time.perf_counter()
    with psycopg.connect(pgdb.dsn(dbname), autocommit=True) as conn:
        movies_data.create_schema(conn, "A")
        counts = movies_data.generate(conn, films, convention="A")
    print(f"movies: generated {counts} in {time.perf_counter() - started:.1f}s", flush=True)
    return dbname


def ours_environment(dbname: str, port: int, airflow_home: Path) -> dict[str, str]:
    env = {key: value for key, value in airflow_environment(airflow_home).items() if key != "PYTHONPATH"}
    es = {"conn_type": "elasticsearch", "host": "127.0.0.1", "port": port}
    for conn_id, connection in ((PG_CONN_ID, pgdb.postgres_connection(dbname)), (ES_CONN_ID, es)):
        env.__setitem__(*connection_env(conn_id, connection))
    return env


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    options = {
        "--films": {"type": int, "default": 200_000},
        "--small": {"type": int, "default": 50_000, "help": "second corpus size for the memory check"},
        "--baseline-sample": {"type": int, "default": 5_000},
        "--keep-db": {"action": "store_true"},
    }
    quick = {"films": 20_000, "small": 5_000, "baseline_sample": 1_000}
    return harness.parse_arguments(MODULE, __doc__, argv, options, quick)


def benchmark(argv: list[str] | None = None) -> dict:
    args = parse_arguments(argv)
    port = free_port()
    server = harness.start_server("dev.es_server", "--port", port, "--major", ES_MAJOR)
    databases: list[str] = []
    try:
        wait_for_port(port)
        cases = []
        with tempfile.TemporaryDirectory(prefix="movies-bench-") as airflow_home:
            for films in sorted({args.small, args.films}):
                databases.append(prepare(films))
                env = ours_environment(databases[-1], port, Path(airflow_home))
                floor = harness.run_phase(MODULE, "--worker", "floor", "--db", databases[-1])
                ours = harness.run_phase(MODULE, "--worker", "ours", "--es-url", es_url(port), env=env)
                delete_index(port, ours.result["index"])
                baseline = None
                if films == args.films:
                    baseline = harness.run_phase(
                        MODULE, "--worker", "baseline", "--db", databases[-1],
                        "--es-url", es_url(port), "--sample", args.baseline_sample,
                    )  # fmt: skip
                cases.append(movies_case(films, ours, baseline, floor))
    finally:
        harness.stop_server(server)
        if not args.keep_db:
            for dbname in databases:
                pgdb.drop_database(dbname)
    return {
        "benchmark": "movies",
        "title": "movies full load: the DAG's plan and sync operators (sync timed) into the ES-subset "
        "server; baseline fetchall + one request per document (indexing timed on "
        f"{args.baseline_sample:,} documents and scaled); floor the payload rows read and discarded",
        "cases": cases,
    }


def movies_case(
    films: int, ours: harness.Phase, baseline: harness.Phase | None, floor: harness.Phase
) -> dict:
    extra = {
        "ours peak RSS after imports, before the load, MiB": round(
            ours.result["imports_peak_rss"] / harness.MIB, 1
        ),
        "documents counted in the index": ours.result["indexed_count"],
    }
    if baseline is not None:
        extra["baseline documents indexed (timed sample)"] = baseline.result["sampled_docs"]
    return harness.case(
        "full load",
        films,
        "documents",
        ours=harness.measurement(ours),
        baseline=harness.measurement(baseline) if baseline else None,
        floor=harness.measurement(floor),
        extra=extra,
    )


def es_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def delete_index(port: int, index: str) -> None:
    import elasticsearch

    with elasticsearch.Elasticsearch(es_url(port)) as es:
        es.indices.delete(index=index)


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        run_worker(sys.argv[2:])
        return
    harness.print_result(benchmark(sys.argv[1:]))


if __name__ == "__main__":
    main()
