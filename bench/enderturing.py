"""Benchmark: staged Ender Turing sessions → PostgreSQL, bulk COPY+upsert vs row-by-row upsert.

    .venv/bin/python -m bench.enderturing [--sessions 100000] [--baseline-sessions 3000] [--rounds 3]

Generates ``--sessions`` sessions (≈10 child rows each: tags, categories, reviewers, CRM statuses,
scores, summaries) as the staged NDJSON the DAG's sync_sessions task writes, then loads them with the
pipeline's loader (the transform → COPY → one set-based upsert per table, one transaction that
sync_sessions runs after its extraction) twice: a first load and an idempotent re-load. The baseline is the reference implementation's approach — same
transform, then per row one SELECT and one UPDATE or INSERT — run on the first
``--baseline-sessions`` sessions only (it is too slow for the whole set); its rate is per row, so
the ratio compares rates. The two alternate over ``--rounds`` rounds, each into empty tables, and
the median ratio is reported. Each phase runs in its own subprocess so its peak RSS is its own.
Last, for scale, the floor: the same transform, then plain COPY into the empty target tables.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from statistics import median

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "plugins"), str(REPO_ROOT)]

from dev import pgdb  # noqa: E402

DAY = date(2024, 6, 26)
SCHEMA = "enderturing"
BASELINE_SCHEMA = "enderturing_baseline"


def generate(directory: Path, sessions: int) -> None:
    from dev.enderturing_server import generate_scores, generate_session, generate_summary
    from etlkit.enderturing import staging

    rng = random.Random(2024)
    directory.mkdir(parents=True, exist_ok=True)
    with (
        (directory / staging.SESSIONS_FILE).open("w") as sessions_out,
        (directory / staging.DETAILS_FILE).open("w") as details_out,
    ):
        for _ in range(sessions):
            session = generate_session(rng, DAY)
            staging.write_ndjson(sessions_out, [session])
            records = [
                {"session_id": session["id"], "endpoint": "summary", "body": generate_summary(rng, session)}
            ]
            if session["reviewers"]:
                records.append(
                    {"session_id": session["id"], "endpoint": "scores", "body": generate_scores(rng, session)}
                )
            staging.write_ndjson(details_out, records)


def load_bulk(directory: Path, database: str, workers: int) -> dict:
    import psycopg

    from etlkit.enderturing import extract, load, staging
    from etlkit.enderturing.tables import SESSION_TABLES

    started = time.perf_counter()
    batch = extract.spool_sessions(directory, directory / staging.SPOOL_DIR, workers)
    transformed = time.perf_counter()
    with psycopg.connect(pgdb.dsn(database)) as conn:
        results = load.load_tables(conn, SCHEMA, SESSION_TABLES, batch.spools, load.SESSIONS_LOCK_KEY)
    finished = time.perf_counter()
    staging.remove_tree(directory / staging.SPOOL_DIR)
    return {
        "seconds": finished - started,
        "transform_seconds": transformed - started,
        "load_seconds": finished - transformed,
        "rows": {r.table: r.staged for r in results},
        "table_seconds": {r.table: r.seconds for r in results},
        "changed": sum(r.inserted + r.updated for r in results),
    }


def copy_floor(directory: Path, database: str, workers: int) -> dict:
    """For scale, not a loader: the same transform, then each table's rows COPYed straight into its
    empty target (no stage, no upsert, no checks). No correct loader of this data can be faster."""
    import psycopg
    from psycopg import sql

    from etlkit.enderturing import extract, load, staging
    from etlkit.enderturing.tables import SESSION_TABLES

    started = time.perf_counter()
    batch = extract.spool_sessions(directory, directory / staging.SPOOL_DIR, workers)
    transformed = time.perf_counter()
    rows = {}
    with psycopg.connect(pgdb.dsn(database)) as conn:
        for table in SESSION_TABLES:
            paths = [path for spool in batch.spools if (path := spool.rows_path(table)).exists()]
            # The loader's own COPY statement, aimed at the target instead of a stage.
            statement = load._query(
                "stage_copy.sql",
                stage=sql.Identifier(SCHEMA, table.name),
                columns=sql.SQL(", ").join(map(sql.Identifier, table.columns)),
            )
            rows[table.name] = load._copy_files(conn, statement, paths) if paths else 0
    finished = time.perf_counter()
    staging.remove_tree(directory / staging.SPOOL_DIR)
    return {"seconds": finished - started, "load_seconds": finished - transformed, "rows": rows}


def load_dictionaries(conn, schema: str) -> None:
    """The generator's dictionaries, so the sessions' soft relationships resolve as in production."""
    from dev.enderturing_server import generate_dictionaries
    from etlkit.enderturing import extract, load, staging
    from etlkit.enderturing.tables import DICTIONARY_TABLES
    from etlkit.enderturing.transform import Transformer

    with tempfile.TemporaryDirectory() as tmp:
        with staging.CopySpool(Path(tmp)) as spool:
            extract.transform_dictionaries(generate_dictionaries(random.Random(2024)), Transformer(spool))
        load.load_tables(conn, schema, DICTIONARY_TABLES, [spool], load.DICTIONARIES_LOCK_KEY)


class ListSink:
    def __init__(self):
        self.rows: list[tuple] = []

    def add(self, table, row):
        self.rows.append((table, row))

    def replace(self, table, parent_key):
        pass


def _row_statements(table, conn) -> tuple[str, str | None, str]:
    from psycopg import sql

    target = sql.Identifier(BASELINE_SCHEMA, table.name)
    key_match = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in table.key)
    select = sql.SQL("SELECT 1 FROM {} WHERE {}").format(target, key_match)
    update = None
    if table.non_key_columns:
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = %s").format(sql.Identifier(c)) for c in table.non_key_columns
        )
        update = sql.SQL("UPDATE {} SET {}, etl_loaded_at = now() WHERE {}").format(
            target, assignments, key_match
        )
    insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        target,
        sql.SQL(", ").join(map(sql.Identifier, table.columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(table.columns)),
    )
    return (
        select.as_string(conn),
        update.as_string(conn) if update is not None else None,
        insert.as_string(conn),
    )


def load_row_by_row(directory: Path, database: str, sessions: int) -> dict:
    """The reference implementation's pattern: per row SELECT, then UPDATE or INSERT."""
    import itertools

    import psycopg

    from etlkit.enderturing import staging
    from etlkit.enderturing.transform import Transformer

    started = time.perf_counter()
    sink = ListSink()
    transformer = Transformer(sink)
    ids = set()
    for position, session in enumerate(
        itertools.islice(staging.read_ndjson(directory / staging.SESSIONS_FILE), sessions)
    ):
        ids.add(transformer.session(session, f"item {position}"))
    handlers = {"scores": transformer.scores, "summary": transformer.summaries}
    # Details are staged in session order: the sample's records come first.
    details = staging.read_ndjson(directory / staging.DETAILS_FILE)
    for record in itertools.takewhile(lambda r: r["session_id"] in ids, details):
        handlers[record["endpoint"]](record["session_id"], record["body"])
    statements = {}
    with psycopg.connect(pgdb.dsn(database)) as conn:
        for table, row in sink.rows:
            if table.name not in statements:  # composed once per table, as any sane row-by-row loader would
                statements[table.name] = _row_statements(table, conn)
            select, update, insert = statements[table.name]
            key_values = row[: len(table.key)]
            exists = conn.execute(select, key_values).fetchone()
            if exists and update is not None:
                conn.execute(update, (*row[len(table.key) :], *key_values))
            elif not exists:
                conn.execute(insert, row)
    finished = time.perf_counter()
    counts: dict[str, int] = {}
    for table, _ in sink.rows:
        counts[table.name] = counts.get(table.name, 0) + 1
    return {"seconds": finished - started, "rows": counts}


def run_phase(*args: str) -> tuple[dict, float]:
    """Run one phase in a child process; returns its JSON result (plus the client-side CPU seconds of
    the process and its workers under ``cpu_seconds``) and its peak RSS in MiB."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.enderturing", "--phase", *args], cwd=REPO_ROOT, stdout=subprocess.PIPE
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"phase {args[0]} failed with status {status}")
    result = json.loads(output or b"{}")
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    return result, usage.ru_maxrss / 1024


def child_rows(rows: dict[str, int]) -> int:
    return sum(count for table, count in rows.items() if table != "sessions")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--baseline-sessions", type=int, default=3_000)
    parser.add_argument("--workers", type=int, default=2, help="transform processes of the bulk path")
    parser.add_argument("--rounds", type=int, default=3, help="alternating bulk / baseline measurements")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, directory, *rest = args.phase
        if name == "generate":
            generate(Path(directory), int(rest[0]))
            result = {}
        elif name == "bulk":
            result = load_bulk(Path(directory), rest[0], int(rest[1]))
        elif name == "floor":
            result = copy_floor(Path(directory), rest[0], int(rest[1]))
        else:
            result = load_row_by_row(Path(directory), rest[0], int(rest[1]))
        print(json.dumps(result))
        return

    database = pgdb.create_database("etl_enderturing_bench")
    rounds = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-enderturing-") as tmp:
            staged = Path(tmp)
            started = time.perf_counter()
            _, generate_rss = run_phase("generate", str(staged), str(args.sessions))
            size = sum(p.stat().st_size for p in staged.iterdir()) / 2**20
            print(
                f"generated {args.sessions:,} sessions in {time.perf_counter() - started:.1f}s ({size:.0f} MiB staged)"
            )
            # Rounds alternate the two loaders, each into empty tables: on a shared machine the speed
            # drifts by tens of percent within minutes, and a ratio is only fair between neighbours.
            for _ in range(args.rounds):
                reset_schemas(database)
                first, first_rss = run_phase("bulk", str(staged), database, str(args.workers))
                base, base_rss = run_phase("baseline", str(staged), database, str(args.baseline_sessions))
                rounds.append((first, first_rss, base, base_rss))
                print_round(len(rounds), first, base)
            again, again_rss = run_phase("bulk", str(staged), database, str(args.workers))
            reset_schemas(database)
            floor, _ = run_phase("floor", str(staged), database, str(args.workers))
    finally:
        pgdb.drop_database(database)

    first = rounds[-1][0]
    children = child_rows(first["rows"])
    total = sum(first["rows"].values())
    print(f"rows per table: {first['rows']}")
    print(f"database seconds per table (last first load): {first['table_seconds']}")
    print(f"child rows per session: {children / first['rows']['sessions']:.1f}")
    bulk_rates = sorted(rate(r[0]) for r in rounds)
    child_rates = sorted(rate(r[0], children) for r in rounds)
    base_rates = sorted(rate(r[2]) for r in rounds)
    ratios = sorted(rate(r[0]) / rate(r[2]) for r in rounds)
    print(
        f"bulk load ({args.workers} transform processes, then COPY + upsert in one transaction), "
        f"{total:,} rows ({children:,} child rows), median of {len(rounds)}: {median(bulk_rates):,.0f} rows/s, "
        f"{median(child_rates):,.0f} child rows/s; peak RSS {max(r[1] for r in rounds):.0f} MiB"
    )
    print(
        f"bulk re-load of the same data (idempotent, {again['changed']} rows changed): {again['seconds']:.1f}s = "
        f"{total / again['seconds']:,.0f} rows/s; peak RSS {again_rss:.0f} MiB"
    )
    print(
        f"row-by-row baseline (SELECT then UPDATE/INSERT per row) on a sample of {args.baseline_sessions:,} "
        f"sessions, median of {len(rounds)}: {median(base_rates):,.0f} rows/s; peak RSS "
        f"{max(r[3] for r in rounds):.0f} MiB; scaled to {total:,} rows: ~{total / median(base_rates):,.0f}s"
    )
    print(
        f"ratio bulk / row-by-row per round: {', '.join(f'{r:.1f}x' for r in ratios)}; "
        f"median {median(ratios):.1f}x (generator peak RSS {generate_rss:.0f} MiB)"
    )
    # The database part runs in one transaction on one backend: its rate alone bounds any transform speed-up.
    ceilings = sorted(total / r[0]["load_seconds"] / rate(r[2]) for r in rounds)
    print(
        f"database part alone (COPY + upsert, as if the transform took no time): median "
        f"{median(total / r[0]['load_seconds'] for r in rounds):,.0f} rows/s = {median(ceilings):.1f}x the baseline"
    )
    base_rate = median(base_rates)
    print(
        f"floor, for scale: COPY straight into the empty target tables (no stage, no upsert, no checks) "
        f"{floor['load_seconds']:.1f}s = {total / floor['load_seconds'] / base_rate:.1f}x the baseline; "
        f"with the transform {floor['seconds']:.1f}s = {rate(floor) / base_rate:.1f}x"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def rate(result: dict, rows: int | None = None) -> float:
    return (rows if rows is not None else sum(result["rows"].values())) / result["seconds"]


def print_round(number: int, bulk: dict, base: dict) -> None:
    total = sum(bulk["rows"].values())
    print(
        f"  round {number}: bulk {total:,} rows in {bulk['seconds']:.1f}s (transform "
        f"{bulk['transform_seconds']:.1f}s, database {bulk['load_seconds']:.1f}s) = {rate(bulk):,.0f} rows/s; "
        f"baseline {rate(base):,.0f} rows/s; ratio {rate(bulk) / rate(base):.1f}x",
        flush=True,
    )


def reset_schemas(database: str) -> None:
    """Both warehouses empty but for their dictionaries."""
    import psycopg
    from psycopg import sql

    from etlkit.enderturing import load

    with psycopg.connect(pgdb.dsn(database), autocommit=True) as conn:
        for schema in (SCHEMA, BASELINE_SCHEMA):
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            load.ensure_schema(conn, schema)
            load_dictionaries(conn, schema)


if __name__ == "__main__":
    main()
