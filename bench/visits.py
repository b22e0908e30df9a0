"""Benchmark of the visits load: ``python -m bench.visits [--sizes 100000 1000000] [--baseline-rows 100000] [--quick]``.

Generates a report per size with ``dev.visits_data`` (valid and invalid rows, quoted lists), then
runs each phase in its own process with ``bench.harness`` (so each peak RSS is its own):
  * ours: ``ReportProcessor`` end to end (staging copy with SHA-256, streaming parse and
    validation, COPY batches, visitor upsert, one transaction, verified zip archive), the
    SFTP side served from a local directory so the figure is the pipeline's, not the network's;
    at every size, to show that memory is flat in input size;
  * baseline: the naive way (the file read line by line, the same validation, one INSERT per
    row) on the first ``--baseline-rows`` rows of each report (it is too slow for a whole large
    one); its rate is compared;
  * floor: the least work that gets the report's lines into PostgreSQL: the file streamed as it
    is into one text column with one COPY (no parsing, validation, archive or upsert).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import psycopg

from bench import harness
from dev import pgdb
from dev.visits_data import write_report

MODULE = "bench.visits"
COPY_BLOCK = 1 << 20


class LocalDirectorySftp:
    """The paramiko ``SFTPClient`` calls the processor uses, over a local directory."""

    def stat(self, path):
        st = os.stat(path)
        return SimpleNamespace(st_size=st.st_size, st_mtime=int(st.st_mtime))

    def open(self, path, mode="rb"):
        handle = open(path, mode)  # noqa: SIM115 - returned to a with-block
        handle.prefetch = lambda: None
        return handle

    def remove(self, path):
        os.remove(path)


def run_ours(report: Path, dbname: str, workdir: Path) -> dict:
    from etlkit.visits.process import RemoteFile, ReportProcessor, RunInfo, open_store
    from etlkit.visits.settings import VisitsSettings

    config = VisitsSettings.model_validate(
        {
            "remote_dir": str(report.parent),
            "backup_dir": str(workdir / "bckp"),
            "quarantine_dir": str(workdir / "quarantine"),
            "staging_dir": str(workdir / "staging"),
            "db_schema": "bench_ours",
        }
    )
    with psycopg.connect(pgdb.dsn(dbname)) as conn:
        store = open_store(conn, config, "UTC")
        store.ensure_schema()
        run = RunInfo("bench", f"bench_{time.time_ns()}", date(2024, 5, 31))
        st = os.stat(report)
        started = time.perf_counter()
        metrics = ReportProcessor(LocalDirectorySftp(), store, config, run).process(
            RemoteFile(report.name, st.st_size, int(st.st_mtime))
        )
        elapsed = time.perf_counter() - started
    return {
        "items": metrics.rows_read,
        "loaded": metrics.rows_loaded,
        "rejected": metrics.rows_rejected,
        "seconds": elapsed,
    }


def run_baseline(report: Path, dbname: str, rows: int) -> dict:
    """Row-by-row: parse, validate, one INSERT per line, commit at the end."""
    from etlkit.visits.validation import Rejection, validate_record

    with psycopg.connect(pgdb.dsn(dbname)) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_baseline_statistics")
        conn.execute(
            "CREATE TABLE bench_baseline_statistics (line_number int, email text, jyv text, badmail bool,"
            " baja bool, fecha_envio timestamp, fecha_open timestamp, opens int, opens_virales int,"
            " fecha_click timestamp, clicks int, clicks_virales int, links text, ips text, navegadores text,"
            " plataformas text)"
        )
        conn.commit()
        started = time.perf_counter()
        loaded = rejected = 0
        with open(report, encoding="utf-8", newline="") as handle:
            next(handle)
            for number, line in enumerate(handle, start=2):
                if number - 1 > rows:
                    break
                result = validate_record(line.rstrip("\r\n"), 65_536)
                if isinstance(result, Rejection):
                    rejected += 1
                    continue
                conn.execute(
                    "INSERT INTO bench_baseline_statistics VALUES"
                    " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (number, *result),
                )
                loaded += 1
        conn.commit()
        elapsed = time.perf_counter() - started
    return {"items": loaded + rejected, "loaded": loaded, "rejected": rejected, "seconds": elapsed}


def run_floor(report: Path, dbname: str) -> dict:
    """The report's bytes streamed into one COPY, each line one text value (CSV with control
    characters as delimiter and quote, so nothing in a line is interpreted)."""
    with psycopg.connect(pgdb.dsn(dbname)) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_floor_lines")
        conn.execute("CREATE TABLE bench_floor_lines (line text)")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur:
            statement = "COPY bench_floor_lines FROM STDIN (FORMAT csv, HEADER true, DELIMITER E'\\x01', QUOTE E'\\x02')"
            with cur.copy(statement) as copy, open(report, "rb") as handle:
                while block := handle.read(COPY_BLOCK):
                    copy.write(block)
            rows = cur.rowcount
        conn.commit()
        elapsed = time.perf_counter() - started
    return {"items": rows, "seconds": elapsed}


def run_worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=f"{MODULE} --worker")
    parser.add_argument("kind", choices=["ours", "baseline", "floor"])
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--rows", type=int)
    args = parser.parse_args(argv)
    if args.kind == "ours":
        with tempfile.TemporaryDirectory() as workdir:
            harness.child_result(run_ours(args.report, args.db, Path(workdir)))
    elif args.kind == "baseline":
        harness.child_result(run_baseline(args.report, args.db, args.rows))
    else:
        harness.child_result(run_floor(args.report, args.db))


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    options = {
        "--sizes": {"type": int, "nargs": "+", "default": [100_000, 1_000_000], "help": "report rows"},
        "--baseline-rows": {"type": int, "default": 100_000},
    }
    return harness.parse_arguments(
        MODULE, __doc__, argv, options, {"sizes": [10_000, 50_000], "baseline_rows": 5_000}
    )


def benchmark(argv: list[str] | None = None) -> dict:
    args = parse_arguments(argv)
    sizes = sorted(set(args.sizes))
    dbname = pgdb.create_database("etlkit_bench")
    try:
        with tempfile.TemporaryDirectory(prefix="visits-bench-") as tmp:
            cases = [measure_size(Path(tmp), dbname, rows, args.baseline_rows) for rows in sizes]
    finally:
        pgdb.drop_database(dbname)
    return {
        "benchmark": "visits",
        "title": "one visits report loaded end to end (ReportProcessor: stage, validate, COPY, upsert, "
        f"archive); baseline row-by-row INSERT on at most {args.baseline_rows:,} rows of each report, "
        "rate compared; "
        "floor the file's lines in one COPY",
        "cases": cases,
    }


def measure_size(tmp: Path, dbname: str, rows: int, baseline_rows: int) -> dict:
    report = write_report(tmp / f"rows_{rows}" / "report_1.txt", rows, seed=1, invalid_every=50)
    file_mib = report.stat().st_size / harness.MIB
    baseline = harness.run_phase(
        MODULE, "--worker", "baseline", "--report", report, "--db", dbname, "--rows", min(rows, baseline_rows)
    )
    floor = harness.run_phase(MODULE, "--worker", "floor", "--report", report, "--db", dbname)
    ours = harness.run_phase(MODULE, "--worker", "ours", "--report", report, "--db", dbname)
    ours_figures, floor_figures = harness.measurement(ours), harness.measurement(floor)
    return harness.case(
        "report load",
        rows,
        "rows",
        ours=ours_figures,
        baseline=harness.measurement(baseline),
        floor=floor_figures,
        extra={
            "file MiB": round(file_mib, 1),
            "rows loaded": ours.result["loaded"],
            "rows rejected": ours.result["rejected"],
        },
    )


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        run_worker(sys.argv[2:])
        return
    harness.print_result(benchmark(sys.argv[1:]))


if __name__ == "__main__":
    main()
