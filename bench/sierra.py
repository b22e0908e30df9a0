"""Benchmark: Sierra item extraction to gzip TSV, ours (COPY → gzip on disk) vs the seed-style baseline.

The baseline does what the reference implementation did: SQLAlchemy result → pandas DataFrame →
``to_csv`` string → ``gzip.compress`` in memory. Both run the same item-row SQL over the same
generated ``sierra_view`` (``dev.sierra_data``), each in its own subprocess so that each peak RSS is
measured alone (``os.wait4``). Ours runs as a deployment does with the default settings: one
connection, the selection materialised once, the batch facts, then COPY read by one thread while
the main thread compresses (zlib releases the GIL). ``ours-parts`` is the same with
``extract_parallelism`` 2. The floor, ``sql-floor``, is the least work: the same batch's COPY on one
connection, read and discarded (nothing compressed or written).

    .venv/bin/python -m bench.sierra [--sizes 100000 1000000]
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "plugins"), str(REPO_ROOT)]

from dev import pgdb, sierra_data  # noqa: E402


def extract_ours(dbname: str, items: int, out: Path, **overrides) -> int:
    from dataclasses import replace

    import psycopg

    from etlkit.sierra.extract import Selection, open_snapshot, part_count
    from etlkit.sierra.protocol import SYNC_FULL
    from etlkit.sierra.settings import SyncSettings

    settings = replace(SyncSettings(), **overrides)  # the defaults a deployment runs with
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


def run_worker(name: str, dbname: str, items: int, out: Path) -> dict:
    """One extraction in a fresh interpreter; its own wall time and peak RSS."""
    command = [sys.executable, "-m", "bench.sierra", "--worker", name, "--dbname", dbname]
    command += ["--items", str(items), "--out", str(out)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise RuntimeError(f"{name} worker failed with status {status}")
    result = json.loads(output)
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    result["gzip_bytes"] = out.stat().st_size
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Sierra extraction benchmark")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="item counts")
    parser.add_argument("--worker", choices=sorted(WORKERS))
    parser.add_argument("--dbname")
    parser.add_argument("--items", type=int)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    if args.worker:
        # Each worker's libraries are imported before the clock starts: only the extraction is timed.
        for module in PRELOAD[args.worker]:
            importlib.import_module(module)
        started = time.perf_counter()
        rows = WORKERS[args.worker](args.dbname, args.items, args.out)
        print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started}))
        return

    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    dbname = pgdb.create_database("etl_sierra_bench")
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="sierra-bench-") as workdir:
            for items in args.sizes:
                started = time.perf_counter()
                sierra_data.fill_database(dbname, items)
                print(f"generated {items:,} items in {time.perf_counter() - started:.1f}s", flush=True)
                for name in IMPLS:
                    result = run_worker(name, dbname, items, Path(workdir) / f"{name}.tsv.gz")
                    results.append({"items": items, "impl": name, **result})
                    print(
                        f"  {name:<10} rows {result['rows']:>9,}  {result['seconds']:7.2f}s  "
                        f"{result['rows'] / result['seconds']:>9,.0f} rows/s  "
                        f"peak RSS {result['peak_rss_mib']:6.1f} MiB  gzip {result['gzip_bytes']:>11,} B",
                        flush=True,
                    )
    finally:
        pgdb.drop_database(dbname)

    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print("\nsummary")
    for items in args.sizes:
        base, ours, parts, floor = (
            next(r for r in results if r["items"] == items and r["impl"] == n) for n in IMPLS
        )
        print(
            f"  {items:>9,} items: one connection {ours['seconds']:.2f}s vs floor {floor['seconds']:.2f}s "
            f"({ours['seconds'] / floor['seconds']:.2f}x the floor), two parts {parts['seconds']:.2f}s, "
            f"baseline {base['seconds']:.2f}s ({base['seconds'] / ours['seconds']:.2f}x ours); "
            f"peak RSS ours {ours['peak_rss_mib']:.1f} MiB vs baseline {base['peak_rss_mib']:.1f} MiB"
        )
    ours_rss = [r["peak_rss_mib"] for r in results if r["impl"] == "ours"]
    print(f"  ours peak RSS from smallest to largest size: {' -> '.join(f'{v:.1f}' for v in ours_rss)} MiB")


if __name__ == "__main__":
    main()
