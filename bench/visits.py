"""Benchmark of the visits load: ``python -m bench.visits [--rows 1000000] [--baseline-rows 100000]``.

Generates a report with ``dev.visits_data`` (valid and invalid rows, quoted lists), then in
separate processes (so each peak RSS is its own):
  * ours: ``ReportProcessor`` end to end (staging copy with SHA-256, streaming parse and
    validation, COPY batches, visitor upsert, one transaction, verified zip archive), the
    SFTP side served from a local directory so the figure is the pipeline's, not the network's;
  * baseline: the naive way (``csv`` over the file, the same validation, one INSERT per row).
Prints rows/s, peak RSS and the throughput ratio. Ours runs at 100k and at the full size to
show that memory is flat in input size. Not a test: no thresholds are asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import psycopg

from dev import pgdb
from dev.visits_data import write_report

REPO_ROOT = Path(__file__).resolve().parents[1]


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
    from etlkit.visits.config import VisitsConfig
    from etlkit.visits.process import RemoteFile, ReportProcessor, RunInfo, open_store

    config = VisitsConfig.from_mapping(
        {
            "remote_dir": str(report.parent),
            "backup_dir": str(workdir / "bckp"),
            "quarantine_dir": str(workdir / "quarantine"),
            "staging_dir": str(workdir / "staging"),
            "db_schema": "bench_ours",
        }
    )
    with psycopg.connect(pgdb.dsn(dbname)) as conn:
        store = open_store(conn, config)
        store.ensure_schema()
        run = RunInfo("bench", f"bench_{time.time_ns()}", date(2024, 5, 31))
        st = os.stat(report)
        started = time.perf_counter()
        metrics = ReportProcessor(LocalDirectorySftp(), store, config, run).process(
            RemoteFile(report.name, st.st_size, int(st.st_mtime))
        )
        elapsed = time.perf_counter() - started
    return {
        "rows": metrics.rows_read,
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
    return {"rows": loaded + rejected, "loaded": loaded, "rejected": rejected, "seconds": elapsed}


def peak_rss_mib() -> float:
    """This process's own peak RSS (VmHWM). ``ru_maxrss`` of a child is not used: Linux carries
    the forking parent's high-water mark across ``exec``, which inflates small children."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(args: list[str]) -> dict:
    """Run one worker in its own process; returns its result, including its own peak RSS."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.visits", *args],
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'plugins'}{os.pathsep}{REPO_ROOT}"},
    )
    output, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"worker {args} failed with status {process.returncode}")
    return json.loads(output.decode().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-rows", type=int, default=100_000)
    parser.add_argument("--worker", choices=["ours", "baseline"])
    parser.add_argument("--report", type=Path)
    parser.add_argument("--db")
    args = parser.parse_args()
    if args.worker == "ours":
        with tempfile.TemporaryDirectory() as workdir:
            print(
                json.dumps({**run_ours(args.report, args.db, Path(workdir)), "peak_rss_mib": peak_rss_mib()})
            )
        return
    if args.worker == "baseline":
        print(json.dumps({**run_baseline(args.report, args.db, args.rows), "peak_rss_mib": peak_rss_mib()}))
        return

    dbname = pgdb.create_database("etlkit_bench")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = {}
            for label, rows in (("ours 100k", 100_000), (f"ours {args.rows // 1000}k", args.rows)):
                remote = Path(tmp) / label.replace(" ", "_")
                report = write_report(remote / "report_1.txt", rows, seed=1, invalid_every=50)
                size_mib = report.stat().st_size / 2**20
                results[label] = measure(["--worker", "ours", "--report", str(report), "--db", dbname])
                results[label]["file_mib"] = round(size_mib, 1)
            report = write_report(Path(tmp) / "baseline" / "report_1.txt", args.baseline_rows, seed=1)
            results["naive row-by-row"] = measure(
                [
                    "--worker",
                    "baseline",
                    "--report",
                    str(report),
                    "--db",
                    dbname,
                    "--rows",
                    str(args.baseline_rows),
                ]
            )
    finally:
        pgdb.drop_database(dbname)

    print(f"{'run':<22} {'rows':>9} {'seconds':>8} {'rows/s':>9} {'peak RSS MiB':>13}")
    for label, r in results.items():
        print(
            f"{label:<22} {r['rows']:>9} {r['seconds']:>8.2f} {r['rows'] / r['seconds']:>9.0f} {r['peak_rss_mib']:>13.1f}"
        )
    full = results[f"ours {args.rows // 1000}k"]
    base = results["naive row-by-row"]
    ratio = (full["rows"] / full["seconds"]) / (base["rows"] / base["seconds"])
    print(
        f"throughput ratio ours/baseline: {ratio:.1f}x (baseline measured on {base['rows']} rows, rate compared)"
    )
    print(
        f"peak RSS 100k -> {args.rows // 1000}k: {results['ours 100k']['peak_rss_mib']:.1f} -> {full['peak_rss_mib']:.1f} MiB"
    )


if __name__ == "__main__":
    main()
