"""Benchmark of a declarative job: CSV -> filter -> type_conversion -> upsert (+ rejects CSV).

``python -m bench.jobs [--rows 100000 1000000] [--chunk-size 50000]``

Each component runs in its own subprocess, as an Airflow task would, and its peak RSS is read
with ``os.wait4``. The naive baseline (pandas: read the whole file, filter, convert, COPY)
runs in another subprocess of the same run. Printed per size: wall time, rows/s, the largest
peak RSS of any component, the baseline's figures, and how our peak grows with the row count.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
JOB_NAME = "bench_orders"
JOB = {
    "format_version": 1,
    "name": JOB_NAME,
    "components": [
        {
            "id": "read_orders",
            "type": "read_csv",
            "config": {
                "path": "orders.csv",
                "on_bad_lines": "drop",
                "columns": [
                    {"name": "order_id", "nullable": False},
                    {"name": "customer_id"},
                    {"name": "status"},
                    {"name": "quantity"},
                    {"name": "unit_price"},
                    {"name": "order_date"},
                ],
            },
            "routes": {"out": ["drop_cancelled"]},
        },
        {
            "id": "drop_cancelled",
            "type": "filter",
            "config": {"condition": "status != 'cancelled'"},
            "routes": {"pass": ["convert"]},
        },
        {
            "id": "convert",
            "type": "type_conversion",
            "config": {
                "on_error": "reject",
                "rules": [
                    {"column": "order_id", "to": "integer"},
                    {"column": "quantity", "to": "integer"},
                    {"column": "unit_price", "to": "decimal", "precision": 12, "scale": 2},
                    {"column": "order_date", "to": "date"},
                ],
            },
            "routes": {"out": ["load_orders"], "reject": ["write_rejects"]},
        },
        {
            "id": "load_orders",
            "type": "write_sql",
            "config": {
                "conn": "warehouse",
                "table": "sales.orders",
                "mode": "upsert",
                "key_columns": ["order_id"],
            },
        },
        {"id": "write_rejects", "type": "write_csv", "config": {"path": "rejects.csv"}},
    ],
}


def run_component(job_file: str, component_id: str, run_dir: str, data_root: str, dsn: str) -> None:
    import psycopg

    from etlkit.jobs.environment import rooted_path
    from etlkit.jobs.metrics import ComponentMetrics
    from etlkit.jobs.runtime import RuntimeIO, run_component
    from etlkit.jobs.validation import load_job

    @contextlib.contextmanager
    def connect(_logical: str):
        with psycopg.connect(dsn, autocommit=True) as connection:
            yield connection

    validated = load_job(job_file)
    io = RuntimeIO(Path(run_dir), lambda path, conn: rooted_path(path, data_root), connect)
    metrics = ComponentMetrics(component_id, validated.components[component_id].type)
    run_component(validated, component_id, io, metrics)
    metrics.finish("success")
    print(json.dumps(metrics.summary()))


def naive_baseline(csv_path: str, dsn: str) -> None:
    """Read everything with pandas, filter, convert, COPY the good rows: memory grows with the file."""
    import io

    import pandas as pd
    import psycopg

    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    frame = frame[frame["status"] != "cancelled"]
    typed = frame.assign(
        quantity=pd.to_numeric(frame["quantity"], errors="coerce"),
        unit_price=pd.to_numeric(frame["unit_price"], errors="coerce"),
    )
    good = typed.dropna(subset=["quantity", "unit_price"])
    buffer = io.StringIO()
    good.to_csv(buffer, index=False, header=False)
    with psycopg.connect(dsn, autocommit=True) as connection, connection.transaction():
        connection.execute("TRUNCATE sales.orders")
        with connection.cursor().copy("COPY sales.orders FROM STDIN (FORMAT csv)") as copy:
            copy.write(buffer.getvalue())
    print(json.dumps({"rows": len(good)}))


def _child(args: list[str]) -> tuple[float, int, str]:
    """Run ``python -m bench.jobs <args>``; returns (seconds, peak RSS bytes, stdout)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "plugins"), str(REPO_ROOT)])}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.jobs", *args], stdout=subprocess.PIPE, env=env, cwd=REPO_ROOT
    )
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"benchmark child {args[:2]} failed with exit code {process.returncode}")
    return time.perf_counter() - started, usage.ru_maxrss * 1024, output


def measure(rows: int, chunk_size: int, workdir: Path, dsn: str) -> dict:
    from dev.jobs_data import write_orders_csv

    data_root = workdir / f"data_{rows}"
    csv_path = write_orders_csv(data_root / "orders.csv", rows)
    job_file = workdir / f"{JOB_NAME}.json"
    job_file.write_text(json.dumps({**JOB, "chunk_size": chunk_size}))
    run_dir = workdir / f"run_{rows}"

    from etlkit.jobs.validation import load_job

    peaks, total, summaries = {}, 0.0, {}
    for component_id in load_job(job_file).order:
        seconds, peak, output = _child(
            ["component", str(job_file), component_id, str(run_dir), str(data_root), dsn]
        )
        peaks[component_id], total = peak, total + seconds
        summaries[component_id] = json.loads(output.strip().splitlines()[-1])
    base_seconds, base_peak, _ = _child(["baseline", str(csv_path), dsn])
    return {
        "rows": rows,
        "seconds": total,
        "peak_rss": max(peaks.values()),
        "peaks": peaks,
        "loaded": summaries["load_orders"]["rows_out"]["target"],
        "rejected": summaries["write_rejects"]["rows_out"]["target"],
        "baseline_seconds": base_seconds,
        "baseline_peak_rss": base_peak,
        "csv_mb": csv_path.stat().st_size / 2**20,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "component":
        run_component(*sys.argv[2:7])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "baseline":
        naive_baseline(*sys.argv[2:4])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--chunk-size", type=int, default=50_000)
    args = parser.parse_args()

    sys.path[:0] = [str(REPO_ROOT / "plugins"), str(REPO_ROOT)]
    from dev import jobs_data, pgdb

    database = pgdb.create_database("etl_jobs_bench")
    try:
        jobs_data.create_demo_tables(pgdb.dsn(database))
        with tempfile.TemporaryDirectory(prefix="bench-jobs-") as workdir:
            results = [measure(n, args.chunk_size, Path(workdir), pgdb.dsn(database)) for n in args.rows]
    finally:
        pgdb.drop_database(database)

    mib = 2**20
    print(f"declarative job CSV -> filter -> type_conversion -> upsert, chunk_size={args.chunk_size}")
    for r in results:
        print(
            f"{r['rows']:>9,} rows ({r['csv_mb']:.0f} MiB CSV): ours {r['seconds']:6.1f} s "
            f"{r['rows'] / r['seconds']:>9,.0f} rows/s, peak RSS {r['peak_rss'] / mib:6.1f} MiB "
            f"(loaded {r['loaded']:,}, rejected {r['rejected']:,}) | naive pandas {r['baseline_seconds']:6.1f} s "
            f"{r['rows'] / r['baseline_seconds']:>9,.0f} rows/s, peak RSS {r['baseline_peak_rss'] / mib:6.1f} MiB "
            f"| baseline/ours RSS {r['baseline_peak_rss'] / r['peak_rss']:.2f}x, "
            f"time {r['seconds'] / r['baseline_seconds']:.2f}x"
        )
        print(
            "    per-component peak RSS MiB: "
            + ", ".join(f"{k} {v / mib:.1f}" for k, v in r["peaks"].items())
        )
    if len(results) > 1:
        small, large = results[0], results[-1]
        print(
            f"peak RSS growth {small['rows']:,} -> {large['rows']:,} rows: ours "
            f"{large['peak_rss'] / small['peak_rss']:.2f}x, naive {large['baseline_peak_rss'] / small['baseline_peak_rss']:.2f}x"
        )


if __name__ == "__main__":
    main()
