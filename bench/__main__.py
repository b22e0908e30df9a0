"""Every benchmark on the shared harness, one results file, one report.

    python -m bench [--quick] [--only NAME ...] [--busy-ok]
    python -m bench --render-only bench/results/<date>.json

Checks that the machine is quiet (exit 2 when the 1-minute load average exceeds the cores, unless
``--busy-ok``), runs ``bench.<name>.benchmark()`` of each module in turn (a module that does not
expose ``benchmark()`` yet is skipped with a message; a benchmark that fails is recorded as failed
and the command exits 1 after the others ran), writes ``bench/results/<date>.json`` (``<date>-quick``
for a smoke run, ``<date>-only-<names>`` for a partial one) and renders ``docs/performance.md`` and
its charts under ``docs/performance/`` from that file alone; a partial run's sections replace theirs
in the latest whole run's report, the others kept, and the header names both runs. ``--quick`` runs small sizes, a smoke run
the document says it is.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench import harness, report

MODULES = ("visits", "sierra", "enderturing", "enderturing_api", "movies", "jobs")
RESULTS_DIR = harness.REPO_ROOT / "bench" / "results"
DOC = harness.REPO_ROOT / "docs" / "performance.md"
FIGURES_DIR = harness.REPO_ROOT / "docs" / "performance"


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", nargs="+", choices=MODULES, metavar="NAME", help=f"of {', '.join(MODULES)}")
    parser.add_argument("--busy-ok", action="store_true", help="measure even when the machine is busy")
    parser.add_argument("--render-only", type=Path, metavar="RESULTS.json", help="re-render the report")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    if args.render_only:
        report.render(report.load(args.render_only), DOC, FIGURES_DIR)
        print(f"rendered {DOC.relative_to(harness.REPO_ROOT)} from {args.render_only}")
        return 0
    start = harness.quiet_check(args.busy_ok)
    started_at = datetime.now(UTC)
    run = {
        "arguments": sys.argv[1:] if argv is None else list(argv),
        "quick": args.quick,
        "busy": start["load_average"][0] > start["cpus"],
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "machine_at_start": start,
        "results": [],
        "skipped": [],
        "failed": [],
    }
    for name in args.only or MODULES:
        run_module(name, ["--quick"] if args.quick else [], run)
    run["machine_at_end"] = harness.machine()
    run["started_at"] = started_at.isoformat(timespec="seconds")
    run["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    path = results_path(started_at, args)
    run["results_file"] = str(path.relative_to(harness.REPO_ROOT))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run, indent=1) + "\n")
    report.render(with_earlier_runs(run, args), DOC, FIGURES_DIR)
    print(f"\nwrote {run['results_file']} and {DOC.relative_to(harness.REPO_ROOT)}")
    for failed in run["failed"]:
        print(f"FAILED {failed['benchmark']}: {failed['error']}", file=sys.stderr)
    return 1 if run["failed"] else 0


def with_earlier_runs(run: dict, args: argparse.Namespace) -> dict:
    """A partial (``--only``) run replaces its benchmarks' sections in the report of the latest whole
    run, after any partial runs since that one, which keeps the others; a whole or smoke run is
    reported alone."""
    if not args.only or args.quick:
        return run
    wholes = sorted(RESULTS_DIR.glob("[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9].json"))
    if not wholes:
        return run
    combined = report.load(wholes[-1])
    partials = [report.load(path) for path in RESULTS_DIR.glob("*-only-*.json")]
    for partial in sorted(partials, key=lambda p: p["started_at"]):
        if partial["started_at"] > combined["started_at"] and not partial.get("quick"):
            combined = report.merged(combined, partial)
    return combined


def run_module(name: str, argv: list[str], run: dict) -> None:
    try:
        module = importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"bench.{name}":
            raise
        return skip(run, name, f"there is no bench/{name}.py yet")
    if not callable(getattr(module, "benchmark", None)):
        return skip(run, name, f"bench/{name}.py does not expose benchmark() on the shared harness yet")
    print(f"\n== {name} ==", flush=True)
    try:
        result = module.benchmark(argv)
    except SystemExit as exc:  # argparse exits on an argument the module does not take
        error = f"benchmark({argv}) exited with status {exc.code}"
        run["failed"].append({"benchmark": name, "error": error})
        return None
    except Exception as exc:
        traceback.print_exc()
        run["failed"].append({"benchmark": name, "error": "".join(traceback.format_exception_only(exc))})
        return None
    harness.print_result(result)
    run["results"].append(result)
    return None


def skip(run: dict, name: str, reason: str) -> None:
    print(f"\n== {name} == skipped: {reason}", flush=True)
    run["skipped"].append({"benchmark": name, "reason": reason})


def results_path(started_at: datetime, args: argparse.Namespace) -> Path:
    stem = started_at.strftime("%Y-%m-%d")
    if args.quick:
        stem += "-quick"
    if args.only:
        stem += "-only-" + "-".join(args.only)
    return RESULTS_DIR / f"{stem}.json"


def git(*args: str) -> str:
    completed = subprocess.run(
        ["git", *args], cwd=harness.REPO_ROOT, capture_output=True, text=True, check=False
    )
    return completed.stdout.strip() if completed.returncode == 0 else "unknown"


if __name__ == "__main__":
    sys.path[:0] = [str(harness.REPO_ROOT / "plugins"), str(harness.REPO_ROOT)]
    raise SystemExit(main())
