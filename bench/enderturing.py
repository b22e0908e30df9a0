"""Benchmark: staged Ender Turing sessions → PostgreSQL, the pipeline's loader against the floor.

    .venv/bin/python -m bench.enderturing [--sessions 100000] [--baseline-sessions 3000] [--rounds 3]
        [--quick] [--busy-ok]

Generates ``--sessions`` sessions (≈8 child rows each: tags, categories, reviewers, CRM statuses,
scores, summaries) as the staged NDJSON the DAG's sync_sessions task writes, then, each phase in its
own process (``bench.harness``: wall time, own peak RSS):

- floor: the same transform (``extract.spool_sessions``), then a plain COPY of each table's rows
  straight into its empty target table (no stage, no upsert, no checks: not a correct loader, the
  least work any loader of these rows does); its COPY alone is the "plain COPY";
- first load: ``load.load_session_batch`` (what sync_sessions runs after its extraction) into the
  same empty tables: digests, transform, per table stage + COPY + upsert + checks, one transaction;
- re-load: the same batch again (idempotent: nothing changes, unchanged sessions are skipped);
- baseline: the reference implementation's pattern, per row SELECT then UPDATE or INSERT, on the
  first ``--baseline-sessions`` sessions (too slow for the whole set; compared as rates).

Targets (issue 16), from this one run: first load ≤ 1.2× the floor; its database part (first load
minus its transform) ≤ 1.6× the plain COPY; the re-load ≤ 0.5× the first load.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from statistics import median

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "plugins"), str(REPO_ROOT)]

from bench import harness  # noqa: E402
from dev import pgdb  # noqa: E402

MODULE = "bench.enderturing"
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
    """The product's path: ``load.load_session_batch`` on the staged batch, one transaction."""
    import psycopg

    from etlkit.enderturing import changes, load, staging

    started = time.perf_counter()
    with psycopg.connect(pgdb.dsn(database)) as conn:
        loaded = load.load_session_batch(conn, SCHEMA, directory, workers)
    seconds = time.perf_counter() - started
    staging.remove_tree(directory / staging.SPOOL_DIR)
    staging.remove_tree(directory / changes.PLAN_DIR)
    return {
        "seconds": seconds,
        "transform_seconds": loaded.transform_seconds,
        "database_seconds": seconds - loaded.transform_seconds,
        "rows": {r.table: r.staged for r in loaded.tables},
        "table_seconds": {r.table: r.seconds for r in loaded.tables},
        "changed": sum(r.inserted + r.updated for r in loaded.tables),
        "sessions": loaded.sessions,
        "unchanged": loaded.unchanged,
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
    return {
        "seconds": finished - started,
        "transform_seconds": transformed - started,
        "database_seconds": finished - transformed,
        "rows": rows,
    }


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
        settle(conn)


def settle(conn) -> None:
    """Write out what the previous phase left dirty (its rows, its dropped tables), so that the
    server's background writes of one phase do not land in the next phase's time."""
    conn.execute("CHECKPOINT")


def total_rows(result: dict) -> int:
    return sum(result["rows"].values())


def run_worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=f"{MODULE} --worker")
    parser.add_argument("kind", choices=["generate", "bulk", "floor", "baseline"])
    parser.add_argument("--staged", type=Path, required=True)
    parser.add_argument("--database")
    parser.add_argument("--count", type=int, help="sessions (generate, baseline sample)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if args.kind == "generate":
        generate(args.staged, args.count)
        result = {"items": args.count}
    elif args.kind == "bulk":
        result = load_bulk(args.staged, args.database, args.workers)
    elif args.kind == "floor":
        result = copy_floor(args.staged, args.database, args.workers)
    else:
        result = load_row_by_row(args.staged, args.database, args.count)
    if "rows" in result:
        result["items"] = total_rows(result)
    harness.child_result(result)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    options = {
        "--sessions": {"type": int, "default": 100_000},
        "--baseline-sessions": {"type": int, "default": 3_000},
        "--workers": {"type": int, "default": 2, "help": "transform processes (the DAG's default)"},
        "--rounds": {"type": int, "default": 3, "help": "floor / first load / re-load rounds"},
    }
    quick = {"sessions": 5_000, "baseline_sessions": 500, "rounds": 1}
    return harness.parse_arguments(MODULE, __doc__, argv, options, quick)


def benchmark(argv: list[str] | None = None) -> dict:
    args = parse_arguments(argv)
    database = pgdb.create_database("etl_enderturing_bench")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-enderturing-") as tmp:
            cases = measure(args, Path(tmp), database)
    finally:
        pgdb.drop_database(database)
    return {
        "benchmark": "enderturing",
        "title": "staged Ender Turing sessions loaded into the 20-table warehouse in one transaction "
        "(first load into empty tables, idempotent re-load); floor: the same transform, then plain COPY "
        "into the empty tables; baseline: SELECT then UPDATE/INSERT per row on a sample",
        "cases": cases,
    }


def measure(args: argparse.Namespace, staged: Path, database: str) -> list[dict]:
    import psycopg

    common = ["--staged", staged, "--database", database, "--workers", args.workers]
    started = time.perf_counter()
    harness.run_phase(MODULE, "--worker", "generate", "--staged", staged, "--count", args.sessions)
    size = sum(p.stat().st_size for p in staged.iterdir()) / harness.MIB
    print(
        f"enderturing: generated {args.sessions:,} sessions in {time.perf_counter() - started:.1f}s ({size:.0f} MiB staged)",
        flush=True,
    )
    # Floor and first load next to each other, each into empty tables, alternating over the rounds:
    # on a shared machine the speed drifts within minutes, and a ratio is only fair between
    # neighbours. The targets are the medians of the per-round ratios.
    rounds = []
    for number in range(1, args.rounds + 1):
        # Which of the two goes first alternates, so that neither always inherits the other's wake.
        if number % 2:
            reset_schemas(database)
            floor = harness.run_phase(MODULE, "--worker", "floor", *common)
        reset_schemas(database)
        first = harness.run_phase(MODULE, "--worker", "bulk", *common)
        with psycopg.connect(pgdb.dsn(database), autocommit=True) as conn:
            settle(conn)
        again = harness.run_phase(MODULE, "--worker", "bulk", *common)
        if not number % 2:
            reset_schemas(database)
            floor = harness.run_phase(MODULE, "--worker", "floor", *common)
        check_round(first, floor, again)
        rounds.append((floor, first, again))
        print(
            f"  round {number}: floor {floor.result['seconds']:.1f}s (plain COPY "
            f"{floor.result['database_seconds']:.1f}s), first load {first.result['seconds']:.1f}s (database "
            f"part {first.result['database_seconds']:.1f}s), re-load {again.result['seconds']:.1f}s",
            flush=True,
        )
    baseline = harness.run_phase(
        MODULE, "--worker", "baseline", *common[:4], "--count", args.baseline_sessions
    )
    floor, first, again = sorted(rounds, key=lambda r: r[1].result["seconds"] / r[0].result["seconds"])[
        len(rounds) // 2
    ]
    end_to_end = median(r[1].result["seconds"] / r[0].result["seconds"] for r in rounds)
    database_ratio = median(r[1].result["database_seconds"] / r[0].result["database_seconds"] for r in rounds)
    reload_ratio = median(r[2].result["seconds"] / r[1].result["seconds"] for r in rounds)
    rows = total_rows(first.result)
    first_m = harness.measurement(first, rows)
    floor_m = harness.measurement(floor, rows)
    first_case = harness.case(
        "first load",
        args.sessions,
        "sessions",
        ours={**first_m, "items": args.sessions},
        baseline={**harness.measurement(baseline), "items": args.baseline_sessions},  # a sample
        floor={**floor_m, "items": args.sessions},
        extra={
            "rows (all 8 tables)": rows,
            "child rows per session": round((rows - first.result["rows"]["sessions"]) / args.sessions, 2),
            "ours: transform seconds": round(first.result["transform_seconds"], 3),
            "ours: database part seconds (all but the transform)": round(first.result["database_seconds"], 3),
            "floor: transform seconds": round(floor.result["transform_seconds"], 3),
            "floor: plain COPY seconds": round(floor.result["database_seconds"], 3),
            **{f"ours: {t} seconds": s for t, s in first.result["table_seconds"].items()},
            "baseline sample sessions": args.baseline_sessions,
            "rounds (figures: the round with the median ours/floor ratio; targets: median ratios)": len(
                rounds
            ),
        },
        targets=[
            harness.target("ours / floor time", end_to_end, 1.2, "<="),
            harness.target("ours database part / plain COPY time", database_ratio, 1.6, "<="),
        ],
    )
    again_m = harness.measurement(again, rows)
    reload_case = harness.case(
        "idempotent re-load (nothing changed)",
        args.sessions,
        "sessions",
        ours={**again_m, "items": args.sessions},
        extra={
            "sessions skipped as unchanged": again.result["unchanged"],
            "rows written": again.result["changed"],
            "first load seconds": round(first_m["seconds"], 3),
        },
        targets=[harness.target("re-load / first load time", reload_ratio, 0.5, "<=")],
    )
    return [first_case, reload_case]


def check_round(first: harness.Phase, floor: harness.Phase, again: harness.Phase) -> None:
    if total_rows(first.result) != total_rows(floor.result) or again.result["changed"]:
        raise SystemExit(
            f"enderturing bench: first load staged {total_rows(first.result)} rows, the floor "
            f"{total_rows(floor.result)}; the re-load changed {again.result['changed']} rows (expected 0)"
        )


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        run_worker(sys.argv[2:])
        return
    argv = [a for a in sys.argv[1:] if a != "--busy-ok"]
    harness.quiet_check(allow_busy=len(argv) < len(sys.argv) - 1)
    harness.print_result(benchmark(argv))


if __name__ == "__main__":
    main()
