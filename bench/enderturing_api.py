"""Benchmark: the Ender Turing API phase of sync_sessions (listing + per-session calls), issue 16.

    .venv/bin/python -m bench.enderturing_api [--quick] [--busy-ok] [--latency-ms 50]
        [--sessions 2000] [--concurrency 4 16] [--rate-limit 100] [--memory-sizes 10000 100000]
        [--memory-latency-ms 2]

The local Ender Turing server (dev/enderturing_server.py) runs in this process with a latency per
call; each measurement is a child process running the product's extraction (the hook and
``extract.list_sessions`` + ``extract.fetch_details``, what sync_sessions calls) into a staging
directory. Cases:

* per-session calls at concurrency c with ``--latency-ms``: calls/s against the limit c ÷ latency
  (the floor: ``calls × latency ÷ c`` seconds, computed, since no client can beat it), target
  ≥ 80 % of it; the baseline is the same code at concurrency 1 on a sample;
* a rate limit below c ÷ latency: the 429s the server answered, pauses, and the achieved rate
  against the limit;
* peak RSS of the whole extraction at 10k and 100k sessions, with ``--memory-latency-ms`` (lower,
  so 100k sessions end in minutes; the memory does not depend on the latency): target 100k
  within 10 % of 10k.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import date
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "plugins"), str(REPO_ROOT)]

from bench import harness  # noqa: E402

DAY = date(2024, 6, 26)
CONN_ID = "enderturing_bench"
NAME = "enderturing_api"


# ---------------------------------------------------------------- child: the product's extraction


def extract_phase(argv: list[str]) -> None:
    """Child: list the day and fetch every session's details with the hook, as sync_sessions does."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--limit-sessions", type=int, default=None)
    args = parser.parse_args(argv)

    from etlkit.enderturing import extract, staging
    from etlkit.enderturing.filters import Pass
    from etlkit.enderturing.settings import EnderTuringSettings
    from etlkit.hooks.enderturing import EnderTuringHook

    hook = EnderTuringHook(CONN_ID)
    settings = EnderTuringSettings(limit_sessions=args.limit_sessions)
    with staging.task_directory() as work:
        started = time.perf_counter()
        distinct, report = extract.list_sessions(hook, [Pass("main", (DAY,))], settings, work)
        listed = time.perf_counter()
        extract.fetch_details(
            hook, distinct, settings, work / staging.DETAILS_FILE, report, concurrency=args.concurrency
        )
        finished = time.perf_counter()
    if report.detail_failures:
        raise SystemExit(f"{report.detail_failures} per-session calls failed")
    harness.child_result(
        {
            "seconds": finished - listed,
            "items": report.detail_calls,
            "listing_seconds": listed - started,
            "extraction_seconds": finished - started,
            "sessions": report.sessions,
            "pauses": hook.pause_gate.pauses,
        }
    )


# ---------------------------------------------------------------- parent


class LocalApi:
    """The local server with ``sessions`` generated sessions of DAY, latency and rate limit set."""

    def __init__(self, sessions: int, latency_ms: float, rate_limit: int | None = None):
        from dev.enderturing_server import FakeEnderTuring, generate_dataset, start_server

        self.fake = FakeEnderTuring(generate_dataset([DAY], sessions, seed=16))
        self.fake.keep_journal = False  # it would grow with every call
        self.fake.cache_listings = True  # the data does not change while served
        self.fake.latency_ms = latency_ms
        self.fake.set_rate_limit(rate_limit)
        self.server = start_server(self.fake)

    def extract(self, concurrency: int, limit_sessions: int | None = None) -> tuple[harness.Phase, dict]:
        """One child extraction; its phase and the server's stats for it."""
        self.fake.reset_stats()
        connection = {
            "conn_type": "http",
            "host": self.server.url,
            "login": self.fake.username,
            "password": self.fake.password,
            "extra": {"detail_concurrency": concurrency},
        }
        args = ["--child", "--concurrency", str(concurrency)]
        if limit_sessions is not None:
            args += ["--limit-sessions", str(limit_sessions)]
        env = {f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(connection)}
        phase = harness.run_phase(f"bench.{NAME}", *args, env=env)
        stats = self.fake.stats
        return phase, {
            "max_in_flight": stats.max_in_flight,
            "rate_limited": stats.rate_limited,
            "accepted": stats.accepted,
        }

    def stop(self) -> None:
        self.server.stop()


def sessions_measurement(phase: harness.Phase) -> dict:
    """The details phase of a child: its seconds, peak RSS and the sessions it fetched details for."""
    return harness.measurement(phase, items=phase.result["sessions"])


def concurrency_case(api: LocalApi, concurrency: int, latency_ms: float, baseline_sessions: int) -> dict:
    phase, stats = api.extract(concurrency)
    ours = sessions_measurement(phase)
    calls = phase.result["items"]
    limit_rate = concurrency * 1000 / latency_ms
    # The floor is computed: no client gets the calls done faster than concurrency / latency allows.
    floor = {"seconds": calls / limit_rate, "peak_rss": 0, "items": ours["items"]}
    base_phase, _ = api.extract(1, limit_sessions=baseline_sessions)
    baseline = sessions_measurement(base_phase)
    achieved = calls / ours["seconds"]
    return harness.case(
        f"per-session calls, concurrency {concurrency}, {latency_ms:g} ms latency",
        ours["items"],
        "sessions",
        ours,
        baseline=baseline,
        floor=floor,
        extra={
            "per-session calls": calls,
            "calls/s": round(achieved, 1),
            "limit concurrency / latency, calls/s": limit_rate,
            "baseline calls/s (concurrency 1)": round(base_phase.result["items"] / baseline["seconds"], 1),
            "server: most calls in flight": stats["max_in_flight"],
            "server: 429 answered": stats["rate_limited"],
            "listing seconds": round(phase.result["listing_seconds"], 2),
            "floor = calls x latency / concurrency, computed (no peak RSS)": round(floor["seconds"], 2),
            "baseline sample, sessions": baseline["items"],
        },
        targets=[
            harness.target("calls/s / (concurrency / latency)", achieved / limit_rate, 0.8, ">="),
            harness.target(
                "most calls in flight / concurrency", stats["max_in_flight"] / concurrency, 1.0, "<="
            ),
        ],
    )


def rate_limited_case(api: LocalApi, concurrency: int, latency_ms: float, rate_limit: int) -> dict:
    phase, stats = api.extract(concurrency)
    ours = sessions_measurement(phase)
    achieved = phase.result["items"] / ours["seconds"]
    windows = math.ceil(stats["accepted"] / rate_limit)  # the fewest 1 s limit windows the run needed
    return harness.case(
        f"rate limit {rate_limit} calls/s, concurrency {concurrency}, {latency_ms:g} ms latency",
        ours["items"],
        "sessions",
        ours,
        extra={
            "per-session calls": phase.result["items"],
            "calls/s": round(achieved, 1),
            "limit concurrency / latency, calls/s": concurrency * 1000 / latency_ms,
            "rate limit, calls/s": rate_limit,
            "achieved calls/s / rate limit": round(achieved / rate_limit, 3),
            "server: 429 answered": stats["rate_limited"],
            "client: shared pauses": phase.result["pauses"],
            "server: most calls in flight": stats["max_in_flight"],
        },
        targets=[
            harness.target(
                "429s / (concurrency x limit windows)",
                stats["rate_limited"] / (concurrency * windows),
                1.0,
                "<=",
            ),
            harness.target(
                "most calls in flight / concurrency", stats["max_in_flight"] / concurrency, 1.0, "<="
            ),
        ],
    )


def memory_case(api: LocalApi, concurrency: int, latency_ms: float, smallest: dict | None) -> dict:
    phase, stats = api.extract(concurrency)
    ours = harness.measurement(
        phase, seconds=phase.result["extraction_seconds"], items=phase.result["sessions"]
    )
    targets = []
    if smallest is not None:
        targets.append(
            harness.target(
                f"peak RSS / peak RSS at {smallest['size']:,} sessions",
                ours["peak_rss"] / smallest["ours"]["peak_rss"],
                1.1,
                "<=",
            )
        )
    return harness.case(
        f"extraction memory, concurrency {concurrency}, {latency_ms:g} ms latency",
        phase.result["sessions"],
        "sessions",
        ours,
        extra={
            "per-session calls": phase.result["items"],
            "listing seconds": round(phase.result["listing_seconds"], 2),
            "details seconds": round(phase.result["seconds"], 2),
            "server: most calls in flight": stats["max_in_flight"],
        },
        targets=targets,
    )


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    options = {
        "--busy-ok": {"action": "store_true", "help": "measure even when the load exceeds the cores"},
        "--latency-ms": {"type": float, "default": 50.0},
        "--sessions": {"type": int, "default": 2000, "help": "sessions of the concurrency cases"},
        "--baseline-sessions": {"type": int, "default": 200, "help": "sample of the concurrency-1 baseline"},
        "--concurrency": {"type": int, "nargs": "+", "default": [4, 16]},
        "--rate-limit": {"type": int, "default": 100, "help": "calls/s, below concurrency / latency"},
        "--memory-sizes": {"type": int, "nargs": "+", "default": [10_000, 100_000]},
        "--memory-latency-ms": {"type": float, "default": 2.0},
        "--memory-concurrency": {"type": int, "default": 4},
    }
    quick = {"sessions": 300, "baseline_sessions": 50, "memory_sizes": [1000, 3000]}
    return harness.parse_arguments(f"bench.{NAME}", __doc__.split("\n")[0], argv, options, quick)


def benchmark(argv: list[str] | None = None) -> dict:
    args = parse_arguments(list(argv or []))
    harness.quiet_check(args.busy_ok)
    cases = []
    api = LocalApi(args.sessions, args.latency_ms)
    try:
        for concurrency in args.concurrency:
            cases.append(concurrency_case(api, concurrency, args.latency_ms, args.baseline_sessions))
        api.fake.set_rate_limit(args.rate_limit)
        cases.append(rate_limited_case(api, max(args.concurrency), args.latency_ms, args.rate_limit))
    finally:
        api.stop()
    smallest = None
    for size in sorted(args.memory_sizes):
        api = LocalApi(size, args.memory_latency_ms)
        try:
            cases.append(memory_case(api, args.memory_concurrency, args.memory_latency_ms, smallest))
        finally:
            api.stop()
        smallest = smallest or cases[-1]
    return {
        "benchmark": NAME,
        "title": "Ender Turing API phase: per-session calls/s against concurrency / latency, "
        "429s under a rate limit, extraction memory 10k -> 100k sessions",
        "cases": cases,
    }


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        extract_phase(sys.argv[2:])
    else:
        harness.print_result(benchmark(sys.argv[1:]))


if __name__ == "__main__":
    main()
