"""Benchmark of the movies full load: PostgreSQL → transform → ``_bulk`` into the local ES-subset server.

    .venv/bin/python -m bench.movies [--films 200000] [--small 50000] [--baseline-sample 5000]

Generates the corpus with ``dev.movies_data`` (convention A), starts ``dev.es_server`` in its own process,
then runs each measured load in a separate subprocess so each one's peak RSS is its own:

* ours: one server-side cursor in ``batch_size`` fetches, streamed through the transform into
  ``BulkLoader`` (chunks of 500 docs / 10 MiB) — the DAG's ``sync`` path without Airflow around it;
  run at two corpus sizes to show memory is flat in corpus size;
* baseline: the naive loader — ``fetchall()`` of the same payload query, every document built in memory,
  then one ``PUT _doc`` per document. Its indexing is timed on the first ``--baseline-sample`` documents and
  scaled to the corpus (one request per document is linear), which the output says.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import psycopg

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "plugins"), str(REPO_ROOT)]

from dev import movies_data, pgdb  # noqa: E402
from dev.sshd import free_port, wait_for_port  # noqa: E402

CHANGE_COLUMNS = {
    "film_work": "modified",
    "genre": "modified",
    "person": "modified",
    "genre_film_work": "created",
    "person_film_work": "created",
}


def _peak_rss_mb() -> float:
    """Peak RSS of this process since it started: ``VmHWM`` belongs to the address space ``exec`` created,
    while ``ru_maxrss`` survives ``exec`` and would include the parent's size at fork time."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _clients(dbname: str, es_url: str):
    import elasticsearch

    pg = psycopg.connect(pgdb.dsn(dbname), options="-c TimeZone=UTC")
    es = elasticsearch.Elasticsearch(es_url, request_timeout=120)
    return pg, es


def worker_ours(dbname: str, es_url: str, index: str, batch_size: int) -> dict:
    from etlkit.movies import queries
    from etlkit.movies.bulk import BulkLoader, index_action
    from etlkit.movies.extract import stream_film_rows
    from etlkit.movies.target import create_physical_index
    from etlkit.movies.transform import build_document, document_json

    pg, es = _clients(dbname, es_url)
    create_physical_index(es, index)
    started = time.perf_counter()
    rows = stream_film_rows(pg, queries.payload_query("content", CHANGE_COLUMNS, "all"), {}, batch_size)
    documents = (build_document(row) for row in rows)
    actions = (index_action(d["id"], document_json(d)) for d in documents)
    result = BulkLoader(es, index=index).load(actions)
    seconds = time.perf_counter() - started
    es.indices.refresh(index=index)
    count = es.count(index=index)["count"]
    pg.close()
    es.close()
    return {
        "docs": result.succeeded,
        "indexed_count": count,
        "seconds": seconds,
        "peak_rss_mb": _peak_rss_mb(),
    }


def worker_baseline(dbname: str, es_url: str, index: str, sample: int) -> dict:
    from etlkit.movies import queries
    from etlkit.movies.extract import film_row
    from etlkit.movies.target import create_physical_index
    from etlkit.movies.transform import build_document

    pg, es = _clients(dbname, es_url)
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
    per_doc = (time.perf_counter() - index_started) / max(min(sample, len(documents)), 1)
    pg.close()
    es.close()
    return {
        "docs": len(documents),
        "sampled_docs": min(sample, len(documents)),
        "seconds": prepared + per_doc * len(documents),
        "peak_rss_mb": _peak_rss_mb(),
    }


def _run_worker(*args: str) -> dict:
    output = subprocess.run(
        [sys.executable, "-m", "bench.movies", "--worker", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    if output.returncode != 0:
        raise RuntimeError(f"worker {args[0]} failed:\n{output.stderr[-4000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def _prepare(films: int) -> str:
    dbname = f"etl_movies_bench_{films}"
    pgdb.recreate_database(dbname)
    started = time.perf_counter()
    with psycopg.connect(pgdb.dsn(dbname), autocommit=True) as conn:
        movies_data.create_schema(conn, "A")
        counts = movies_data.generate(conn, films, convention="A")
    print(f"generated {counts} in {time.perf_counter() - started:.1f}s", flush=True)
    return dbname


def main() -> None:
    parser = argparse.ArgumentParser(description="movies full-load benchmark")
    parser.add_argument("--films", type=int, default=200_000)
    parser.add_argument("--small", type=int, default=50_000, help="second corpus size for the memory check")
    parser.add_argument("--baseline-sample", type=int, default=5_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, dbname, es_url, index, number = args.worker
        worker = worker_ours if kind == "ours" else worker_baseline
        print(json.dumps(worker(dbname, es_url, index, int(number))))
        return

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "dev.es_server", "--port", str(port), "--major", "9"],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
    )
    databases: list[str] = []
    try:
        wait_for_port(port)
        es_url = f"http://127.0.0.1:{port}"
        results = {}
        for films in sorted({args.small, args.films}):
            databases.append(_prepare(films))
            results[films] = _run_worker(
                "ours", databases[-1], es_url, f"bench_ours_{films}", str(args.batch_size)
            )
            print(f"ours, {films} films: {json.dumps(results[films])}", flush=True)
            _delete_index(es_url, f"bench_ours_{films}")
        baseline = _run_worker("baseline", databases[-1], es_url, "bench_baseline", str(args.baseline_sample))
        print(f"baseline, {args.films} films: {json.dumps(baseline)}", flush=True)
        _report(results, baseline, args)
    finally:
        server.terminate()
        server.wait(timeout=30)
        if not args.keep_db:
            for dbname in databases:
                pgdb.drop_database(dbname)


def _delete_index(es_url: str, index: str) -> None:
    import elasticsearch

    with elasticsearch.Elasticsearch(es_url) as es:
        es.indices.delete(index=index)


def _report(results: dict[int, dict], baseline: dict, args) -> None:
    big = results[args.films]
    small = results[args.small]
    ours_rate = big["docs"] / big["seconds"]
    base_rate = baseline["docs"] / baseline["seconds"]
    print()
    print(f"movies full load, {args.films} film works, ES-subset server (separate process)")
    print(
        f"  ours:      {ours_rate:10.0f} docs/s  peak RSS {big['peak_rss_mb']:7.1f} MB  ({big['seconds']:.1f}s)"
    )
    print(
        f"  baseline:  {base_rate:10.0f} docs/s  peak RSS {baseline['peak_rss_mb']:7.1f} MB  "
        f"(fetchall + one request per doc; indexing timed on {baseline['sampled_docs']} docs and scaled)"
    )
    print(
        f"  speed-up:  {ours_rate / base_rate:.1f}x   memory ratio baseline/ours: "
        f"{baseline['peak_rss_mb'] / big['peak_rss_mb']:.1f}x"
    )
    print(
        f"  memory flat in corpus size: {args.small} films -> {small['peak_rss_mb']:.1f} MB, "
        f"{args.films} films -> {big['peak_rss_mb']:.1f} MB"
    )
    print(f"  every document acknowledged and counted: {big['indexed_count'] == big['docs'] == args.films}")


if __name__ == "__main__":
    main()
