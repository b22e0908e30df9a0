"""Benchmark: Sierra item extraction to gzip TSV, ours (COPY → gzip on disk) vs the seed-style baseline.

The baseline does what the reference implementation did: SQLAlchemy result → pandas DataFrame →
``to_csv`` string → ``gzip.compress`` in memory. Both run the same item-row SQL over the same
generated ``sierra_view`` (``dev.sierra_data``), each in its own subprocess (``bench.harness``) so
that each peak RSS is measured alone. Ours runs as a deployment does with the default settings: one
connection, the selection materialised once, the batch facts, then COPY read by one thread while
the main thread compresses (zlib releases the GIL). ``ours-parts`` is the same with
``extract_parallelism`` 2. The floor, ``sql-floor``, is the least work: the same batch's COPY on one
connection, read and discarded (nothing compressed or written).

    .venv/bin/python -m bench.sierra [--sizes 100000 1000000] [--quick]
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "plugins"), str(REPO_ROOT)]

from bench import harness  # noqa: E402
from dev import pgdb, sierra_data  # noqa: E402

MODULE = "bench.sierra"


def extract_ours(dbname: str, items: int, out: Path, **overrides) -> int:
    import psycopg

    from etlkit.sierra.extract import Selection, open_snapshot, part_count
    from etlkit.sierra.protocol import SYNC_FULL
    from etlkit.sierra.settings import SierraSettings

    settings = SierraSettings(**overrides)  # the defaults a deployment runs with
    selection = Selection(SYNC_FULL, last_synced_id=0, batch_size=items)
    connect = lambda: psycopg.connect(pgdb.dsn(dbname))  # noqa: E731
    with open_snapshot(connect(), 3600, connect=connect) as snap:
        stats = snap.batch_stats(selection)
        parts = part_count(
            stats.item_count, settings.extract_parallelism, settings.extract_min_items_per_part
        )
        rows = snap.copy_rows(selection, out, itype_null_fallback=None, parts=parts)
    assert rows == stats.item_count
    return rows


def database_floor(dbname: str, items: int, out: Path) -> int:
    """The least work: ours up to the COPY (same snapshot, selection materialised once, same
    statement on one connection), its output read and discarded, nothing compressed or written."""
    import psycopg
    from psycopg import sql as pgsql

    from etlkit.sierra.extract import COPY_OPTIONS, Selection, materialised_rows_query, open_snapshot
    from etlkit.sierra.protocol import SYNC_FULL

    selection = Selection(SYNC_FULL, last_synced_id=0, batch_size=items)
    with open_snapshot(psycopg.connect(pgdb.dsn(dbname)), 3600) as snap:
        snap.batch_stats(selection)
        query, params = materialised_rows_query()
        statement = pgsql.SQL("COPY ({}) TO STDOUT {}").format(query, COPY_OPTIONS)
        with snap.conn.cursor() as cur:
            with cur.copy(statement, {**params, "itype_null_fallback": None}) as copy:
                for _ in copy:
                    pass
            rows = cur.rowcount
    out.write_bytes(b"")
    return rows


def extract_baseline(dbname: str, items: int, out: Path) -> int:
    import pandas as pd
    import psycopg
    from sqlalchemy import create_engine, text

    from etlkit.sierra.extract import Selection, item_rows_query
    from etlkit.sierra.protocol import SYNC_FULL

    query, params = item_rows_query(Selection(SYNC_FULL, last_synced_id=0, batch_size=items))
    with psycopg.connect(pgdb.dsn(dbname)) as conn:
        sql_text = psycopg.ClientCursor(conn).mogrify(query, {**params, "itype_null_fallback": None})
    engine = create_engine(f"postgresql+psycopg://{pgdb.PG_USER}@{pgdb.PG_HOST}:{pgdb.PG_PORT}/{dbname}")
    with engine.connect() as conn:
        frame = pd.read_sql(text(sql_text), conn)
    engine.dispose()
    data = gzip.compress(frame.to_csv(sep="\t", index=False).encode("utf-8"))
    out.write_bytes(data)
    return len(frame)


def extract_ours_in_parts(dbname: str, items: int, out: Path) -> int:
    return extract_ours(dbname, items, out, extract_parallelism=2)


WORKERS = {
    "ours": extract_ours,
    "ours-parts": extract_ours_in_parts,
    "baseline": extract_baseline,
    "sql-floor": database_floor,
}
IMPLS = ("baseline", "ours", "ours-parts", "sql-floor")
PRELOAD = {
    "ours": ["psycopg", "etlkit.sierra.extract"],
    "ours-parts": ["psycopg", "etlkit.sierra.extract"],
    "baseline": ["psycopg", "pandas", "sqlalchemy"],
    "sql-floor": ["psycopg", "etlkit.sierra.extract"],
}


def run_worker(argv: list[str]) -> None:
    """Child side: one extraction in a fresh interpreter, its libraries imported before the clock
    starts so that only the extraction is timed."""
    parser = argparse.ArgumentParser(prog=f"{MODULE} --worker")
    parser.add_argument("kind", choices=sorted(WORKERS))
    parser.add_argument("--dbname", required=True)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    for module in PRELOAD[args.kind]:
        importlib.import_module(module)
    started = time.perf_counter()
    rows = WORKERS[args.kind](args.dbname, args.items, args.out)
    harness.child_result({"items": rows, "seconds": time.perf_counter() - started})


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    options = {"--sizes": {"type": int, "nargs": "+", "default": [100_000, 1_000_000], "help": "item counts"}}
    return harness.parse_arguments(MODULE, __doc__, argv, options, {"sizes": [10_000, 50_000]})


def benchmark(argv: list[str] | None = None) -> dict:
    args = parse_arguments(argv)
    dbname = pgdb.create_database("etl_sierra_bench")
    try:
        with tempfile.TemporaryDirectory(prefix="sierra-bench-") as workdir:
            cases = [measure_size(dbname, items, Path(workdir)) for items in sorted(set(args.sizes))]
    finally:
        pgdb.drop_database(dbname)
    return {
        "benchmark": "sierra",
        "title": "one full batch of Sierra items extracted to a gzip TSV file (default settings: one "
        "connection); baseline SQLAlchemy → pandas → gzip in memory; floor the same COPY read and discarded",
        "cases": cases,
    }


def measure_size(dbname: str, items: int, workdir: Path) -> dict:
    started = time.perf_counter()
    sierra_data.fill_database(dbname, items)
    print(f"sierra: generated {items:,} items in {time.perf_counter() - started:.1f}s", flush=True)
    phases, gzip_bytes = {}, {}
    for name in IMPLS:
        out = workdir / f"{name}.tsv.gz"
        phases[name] = harness.run_phase(
            MODULE, "--worker", name, "--dbname", dbname, "--items", items, "--out", out
        )
        gzip_bytes[name] = out.stat().st_size
    parts = harness.measurement(phases["ours-parts"])
    return harness.case(
        "full batch extraction",
        items,
        "items",
        ours=harness.measurement(phases["ours"]),
        baseline=harness.measurement(phases["baseline"]),
        floor=harness.measurement(phases["sql-floor"]),
        extra={
            "ours with extract_parallelism 2, seconds": round(parts["seconds"], 3),
            "ours with extract_parallelism 2, peak RSS MiB": round(parts["peak_rss"] / harness.MIB, 1),
            "gzip bytes ours": gzip_bytes["ours"],
            "gzip bytes baseline": gzip_bytes["baseline"],
        },
    )


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        run_worker(sys.argv[2:])
        return
    harness.print_result(benchmark(sys.argv[1:]))


if __name__ == "__main__":
    main()
