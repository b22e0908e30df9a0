"""The one bench harness: a subprocess per phase, its peak RSS from ``VmHWM``, one JSON result.

Child side: a phase is ``python -m <module> <args>``; it does its work and ends with
``child_result(payload)``, which prints one last stdout line ``BENCH_RESULT {json}`` holding the
payload plus ``peak_rss``, the child's own high-water mark in bytes (``VmHWM`` of
``/proc/self/status``; ``ru_maxrss`` is not used because Linux carries the forking parent's
high-water mark across ``exec``, which inflates small children).

Parent side: ``run_phase(module, *args)`` runs that child with the venv's Python (PYTHONPATH =
plugins + repo root, cwd = repo root), times it and returns ``Phase(seconds, peak_rss, result)``;
a child that exits non-zero raises ``PhaseFailed`` with the tail of its stderr.

Every ``bench/<name>.py`` exposes ``benchmark(argv) -> dict`` returning
``{"benchmark", "title", "cases": [case(...), ...]}`` (see ``case``, ``measurement``, ``target``)
and its ``main()`` calls ``print_result(benchmark(sys.argv[1:]))``. ``python -m bench`` runs them
all, writes ``bench/results/<date>.json`` and renders ``docs/performance.md``; it calls
``benchmark([])`` for the full run and ``benchmark(["--quick"])`` for a smoke run, so every
``benchmark`` accepts ``--quick`` (small sizes, same code paths).
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
RESULT_MARKER = "BENCH_RESULT "
STDERR_TAIL_CHARS = 4000
MIB = 2**20

OPERATORS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}


class PhaseFailed(RuntimeError):
    """A benchmark child exited non-zero or printed no ``BENCH_RESULT`` line."""


@dataclass(frozen=True)
class Phase:
    seconds: float  # wall seconds of the whole child (interpreter start and imports included)
    peak_rss: int  # the child's own VmHWM, bytes
    result: dict  # the child's payload (its "peak_rss" included)


# ---------------------------------------------------------------- child side


def peak_rss() -> int:
    """This process's peak resident set size (VmHWM) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (the harness needs Linux)")


def child_result(payload: dict) -> None:
    """End a phase: print its payload and this process's peak RSS as the last stdout line."""
    sys.stdout.flush()
    print(RESULT_MARKER + json.dumps({**payload, "peak_rss": peak_rss()}), flush=True)


# ---------------------------------------------------------------- parent side


def python_executable() -> str:
    return str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable


def child_environment(env: dict | None) -> dict:
    inherited = (env or {}).get("PYTHONPATH") or os.environ.get("PYTHONPATH")
    paths = [str(REPO_ROOT / "plugins"), str(REPO_ROOT), *([inherited] if inherited else [])]
    return {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(paths)}


def run_phase(module: str, *args: str, env: dict | None = None) -> Phase:
    """Run ``<venv python> -m module args`` in its own process; its wall time, peak RSS and payload."""
    command = [python_executable(), "-m", module, *map(str, args)]
    started = time.perf_counter()
    completed = subprocess.run(
        command, cwd=REPO_ROOT, env=child_environment(env), capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise PhaseFailed(
            f"{' '.join(command[1:])} exited with status {completed.returncode}; stderr tail:\n"
            f"{completed.stderr[-STDERR_TAIL_CHARS:]}"
        )
    result = parse_result(completed.stdout)
    if result is None:
        raise PhaseFailed(
            f"{' '.join(command[1:])} printed no {RESULT_MARKER.strip()} line (it must end with "
            f"harness.child_result); stderr tail:\n{completed.stderr[-STDERR_TAIL_CHARS:]}"
        )
    return Phase(seconds=seconds, peak_rss=int(result["peak_rss"]), result=result)


def start_server(module: str, *args: str) -> subprocess.Popen:
    """A local test server (``python -m module args``) in the background, with the children's
    environment; its output is discarded. Stop it with ``stop_server``."""
    command = [python_executable(), "-m", module, *map(str, args)]
    return subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=child_environment(None),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_server(process: subprocess.Popen, timeout: float = 30) -> None:
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def parse_result(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    return None


def parse_arguments(
    module: str, doc: str | None, argv: list[str] | None, options: dict[str, dict], quick: dict[str, Any]
) -> argparse.Namespace:
    """The command line of ``python -m <module>``: ``options`` (flag -> ``add_argument`` keywords) and
    ``--quick``, a smoke run on the same code paths, which sets the arguments in ``quick``."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for flag, keywords in options.items():
        parser.add_argument(flag, **keywords)
    sizes = ", ".join(f"--{name.replace('_', '-')} {value}" for name, value in quick.items())
    parser.add_argument("--quick", action="store_true", help=f"a smoke run, the same code paths: {sizes}")
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in quick.items():
            setattr(args, name, value)
    return args


def machine() -> dict:
    """The load average (1, 5, 15 minutes) and the core count, to print beside every figure."""
    return {"load_average": [round(value, 2) for value in os.getloadavg()], "cpus": os.cpu_count() or 1}


_run_checked = False  # set by the first quiet_check that passes in this process


def quiet_check(allow_busy: bool) -> dict:
    """Print the load average and cores; exit 2 when the machine is busier than its cores.

    Only the first check of a process decides: ``python -m bench`` checks once at the start, and a
    benchmark's own check later in that run only prints the load (the benchmarks before it, not
    other work, may have raised it)."""
    global _run_checked
    state = machine()
    one, five, fifteen = state["load_average"]
    print(f"load average {one:.2f} {five:.2f} {fifteen:.2f}, {state['cpus']} cores", flush=True)
    if _run_checked:
        return state
    if one > state["cpus"]:
        message = (
            f"the machine is busy: 1-minute load average {one:.2f} exceeds {state['cpus']} cores, "
            "so the figures would measure the other work"
        )
        if not allow_busy:
            print(f"{message}; wait for a quiet machine or pass --busy-ok", file=sys.stderr)
            raise SystemExit(2)
        print(f"{message}; measuring anyway (--busy-ok)", flush=True)
    _run_checked = True
    return state


# ---------------------------------------------------------------- the result shape


def measurement(phase: Phase, items: int | None = None, seconds: float | None = None) -> dict:
    """``{"seconds", "peak_rss", "items"}`` of one phase.

    ``seconds`` defaults to the child's own ``"seconds"`` when its payload has one (the work alone,
    without interpreter start and imports), else the phase's wall time; ``items`` defaults to the
    payload's ``"items"``."""
    if seconds is None:
        seconds = phase.result.get("seconds", phase.seconds)
    if items is None:
        items = phase.result["items"]
    return {"seconds": float(seconds), "peak_rss": phase.peak_rss, "items": int(items)}


def target(name: str, value: float, limit: float, op: str) -> dict:
    """A target ratio of this run, e.g. ``target("ours / floor time", 1.15, 1.2, "<=")``."""
    return {
        "name": name,
        "value": round(float(value), 4),
        "limit": limit,
        "op": op,
        "met": bool(OPERATORS[op](value, limit)),
    }


def case(
    name: str,
    size: int,
    unit: str,
    ours: dict,
    baseline: dict | None = None,
    floor: dict | None = None,
    extra: dict | None = None,
    targets: list[dict] | None = None,
) -> dict:
    """One case of a benchmark result, with the machine's state taken now (right after the case)."""
    return {
        "case": name,
        "size": int(size),
        "unit": unit,
        "ours": ours,
        "baseline": baseline,
        "floor": floor,
        "extra": extra or {},
        "targets": targets or [],
        "machine": machine(),
    }


def throughput(figures: dict | None) -> float | None:
    if not figures or not figures.get("seconds"):
        return None
    return figures["items"] / figures["seconds"]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


# ---------------------------------------------------------------- printing


def format_number(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def print_result(result: dict, file=None) -> None:
    """Print one benchmark's result: per case ours/baseline/floor, throughput, ratios, RSS, targets."""
    out = file or sys.stdout
    print(f"\n{result['benchmark']}: {result['title']}", file=out)
    for entry in result["cases"]:
        unit = entry["unit"]
        load = " ".join(f"{v:.2f}" for v in entry["machine"]["load_average"])
        print(
            f"  {entry['case']} ({entry['size']:,} {unit}); load average {load}, "
            f"{entry['machine']['cpus']} cores",
            file=out,
        )
        print(f"    {'':<9} {'items':>11} {'seconds':>9} {unit + '/s':>14} {'peak RSS MiB':>13}", file=out)
        for role in ("ours", "baseline", "floor"):
            figures = entry.get(role)
            if figures:
                print(
                    f"    {role:<9} {figures['items']:>11,} {figures['seconds']:>9.2f} "
                    f"{format_number(throughput(figures)):>14} {figures['peak_rss'] / MIB:>13.1f}",
                    file=out,
                )
        for line in ratio_lines(entry):
            print(f"    {line}", file=out)
        for name, value in entry.get("extra", {}).items():
            print(
                f"    {name}: {format_number(value) if isinstance(value, int | float) else value}", file=out
            )
        for goal in entry.get("targets", []):
            verdict = "met" if goal["met"] else "MISSED"
            print(
                f"    target {goal['name']} {goal['op']} {goal['limit']}: {goal['value']:.2f} {verdict}",
                file=out,
            )


def ratio_lines(entry: dict) -> list[str]:
    ours = throughput(entry.get("ours"))
    lines = []
    for role in ("baseline", "floor"):
        value = ratio(ours, throughput(entry.get(role)))
        if value is not None:
            lines.append(f"throughput ours / {role}: {value:.2f}x")
    return lines
