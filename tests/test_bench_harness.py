"""The shared bench harness measures real children, and the report renders one run's results file."""

from __future__ import annotations

import json
import os

import pytest
from bench import harness, report

CHILD = "tests.bench_harness_child"
MIB = harness.MIB


def test_a_child_holding_memory_reports_a_peak_rss_above_it():
    idle = harness.run_phase(CHILD, "allocate", "0")
    holding = harness.run_phase(CHILD, "allocate", "96")

    assert holding.result["held_bytes"] == 96 * MIB
    assert holding.result["items"] == 1234
    assert holding.peak_rss == holding.result["peak_rss"]
    assert holding.peak_rss > 96 * MIB
    # The child's own high-water mark: the 96 MiB show up over the idle child's, not the parent's size.
    assert holding.peak_rss - idle.peak_rss >= 90 * MIB
    assert holding.seconds > 0


def test_a_failing_child_raises_with_its_stderr():
    with pytest.raises(harness.PhaseFailed, match="could not reach its database") as failure:
        harness.run_phase(CHILD, "fail")
    assert "status 3" in str(failure.value)


def test_a_child_without_a_result_line_raises():
    with pytest.raises(harness.PhaseFailed, match="no BENCH_RESULT line"):
        harness.run_phase(CHILD, "silent")


def test_the_child_environment_puts_plugins_and_the_repo_first(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    paths = harness.child_environment({"EXTRA": "1"})["PYTHONPATH"].split(os.pathsep)
    assert paths == [str(harness.REPO_ROOT / "plugins"), str(harness.REPO_ROOT), "/elsewhere"]


def test_the_quiet_check_refuses_a_busy_machine_unless_allowed(monkeypatch, capsys):
    cpus = os.cpu_count()
    monkeypatch.setattr(harness, "_run_checked", False)
    monkeypatch.setattr(os, "getloadavg", lambda: (cpus + 0.5, 1.0, 1.0))
    with pytest.raises(SystemExit) as refused:
        harness.quiet_check(allow_busy=False)
    assert refused.value.code == 2
    assert "--busy-ok" in capsys.readouterr().err
    assert harness.quiet_check(allow_busy=True)["load_average"][0] == cpus + 0.5
    monkeypatch.setattr(os, "getloadavg", lambda: (cpus - 0.5, 1.0, 1.0))
    assert harness.quiet_check(allow_busy=False)["cpus"] == cpus


def test_only_the_first_quiet_check_of_a_run_decides(monkeypatch):
    cpus = os.cpu_count()
    monkeypatch.setattr(harness, "_run_checked", False)
    monkeypatch.setattr(os, "getloadavg", lambda: (cpus - 0.5, 1.0, 1.0))
    harness.quiet_check(allow_busy=False)  # python -m bench, at the start of a quiet run
    monkeypatch.setattr(os, "getloadavg", lambda: (cpus + 3.0, 1.0, 1.0))
    # A benchmark's own check later in the run: the load the earlier benchmarks caused does not stop it.
    assert harness.quiet_check(allow_busy=False)["load_average"][0] == cpus + 3.0


def test_targets_say_whether_they_are_met():
    assert harness.target("ours / floor time", 1.15, 1.2, "<=")["met"] is True
    assert harness.target("ours / floor time", 1.47, 1.2, "<=")["met"] is False
    assert harness.target("calls per second / limit", 0.85, 0.8, ">=")["met"] is True


def measured_run(tmp_path) -> dict:
    """A results file as ``python -m bench`` writes it, its figures measured from real children."""
    small, large = (harness.run_phase(CHILD, "allocate", str(mib)) for mib in (8, 64))
    cases = [
        harness.case(
            "load",
            size,
            "rows",
            ours=harness.measurement(phase, items=size, seconds=seconds),
            baseline=harness.measurement(phase, items=size, seconds=seconds * 4),
            floor=harness.measurement(phase, items=size, seconds=seconds / 2),
            extra={"rejected rows": 7},
            targets=[harness.target("ours / floor time", 2.0, 1.2, "<=")],
        )
        for size, seconds, phase in ((1000, 0.5, small), (10000, 4.0, large))
    ]
    single = [harness.case("re-load", 500, "sessions", ours=harness.measurement(small, seconds=2.0))]
    run = {
        "arguments": ["--quick"],
        "quick": True,
        "busy": False,
        "commit": "0123abc",
        "dirty": False,
        "machine_at_start": harness.machine(),
        "machine_at_end": harness.machine(),
        "started_at": "2026-12-06T23:00:00+00:00",
        "finished_at": "2026-12-06T23:05:00+00:00",
        "results_file": "bench/results/2026-12-06-quick.json",
        "results": [
            {"benchmark": "sizes", "title": "two sizes", "cases": cases},
            {"benchmark": "single", "title": "one size", "cases": single},
        ],
        "skipped": [{"benchmark": "jobs", "reason": "bench/jobs.py does not expose benchmark() yet"}],
        "failed": [],
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(run))
    return report.load(path)


def test_the_report_renders_a_results_file_with_its_figures_and_charts(tmp_path):
    run = measured_run(tmp_path)
    doc, figures = tmp_path / "docs" / "performance.md", tmp_path / "docs" / "performance"

    text = report.render(run, doc, figures)

    assert doc.read_text() == text
    assert "Smoke run" in text and "`0123abc`" in text and "bench/results/2026-12-06-quick.json" in text
    large = run["results"][0]["cases"][1]
    row = next(line for line in text.splitlines() if line.startswith("| load | 10,000 rows |"))
    assert "| 4.00 | 2,500 |" in row  # ours: seconds, rows/s
    assert f"| {large['ours']['peak_rss'] / MIB:.1f} |" in row
    assert "| 4.00× | 0.50× |" in row  # ours / baseline, ours / floor throughput
    assert " ".join(f"{v:.2f}" for v in large["machine"]["load_average"]) in row
    assert "| ours / floor time | 2.00 | <= 1.2 | **no** |" in text
    assert "| load | 1,000 | rejected rows | 7 |" in text
    assert "jobs: not run: bench/jobs.py does not expose benchmark() yet" in text
    assert "![sizes: throughput and peak memory against input size](performance/sizes.png)" in text
    assert (figures / "sizes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (figures / "single.png").exists()  # one size: no chart


def test_rendering_again_removes_charts_of_an_earlier_run(tmp_path):
    run = measured_run(tmp_path)
    figures = tmp_path / "performance"
    figures.mkdir()
    (figures / "gone.png").write_bytes(b"old")
    report.render(run, tmp_path / "performance.md", figures)
    assert sorted(p.name for p in figures.iterdir()) == ["sizes.png"]


def test_python_m_bench_skips_modules_without_a_benchmark_with_a_message(capsys):
    from bench.__main__ import run_module

    run = {"results": [], "skipped": [], "failed": []}
    run_module("not_written_yet", [], run)
    run_module("report", [], run)  # a module of bench/ without benchmark()
    assert run["skipped"] == [
        {"benchmark": "not_written_yet", "reason": "there is no bench/not_written_yet.py yet"},
        {
            "benchmark": "report",
            "reason": "bench/report.py does not expose benchmark() on the shared harness yet",
        },
    ]
    assert run["results"] == [] and run["failed"] == []
    assert "== report == skipped" in capsys.readouterr().out


def test_a_partial_run_replaces_only_its_sections_in_the_latest_whole_runs_report(tmp_path, monkeypatch):
    from bench import __main__ as bench_main

    whole = measured_run(tmp_path)
    whole.update(quick=False, arguments=[], results_file="bench/results/2026-12-06.json")
    earlier_partial = {
        **whole,
        "arguments": ["--only", "single"],
        "commit": "4567def",
        "started_at": "2026-12-07T01:00:00+00:00",
        "results_file": "bench/results/2026-12-07-only-single.json",
        "results": [{**whole["results"][1], "title": "one size, measured again"}],
    }
    partial = {
        **whole,
        "arguments": ["--only", "sizes"],
        "commit": "89abcde",
        "started_at": "2026-12-07T02:00:00+00:00",
        "results_file": "bench/results/2026-12-07-only-sizes.json",
        "results": [{**whole["results"][0], "title": "two sizes, measured again"}],
    }
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    for run in (whole, earlier_partial, partial):
        (results_dir / run["results_file"].rsplit("/", 1)[1]).write_text(json.dumps(run))
    monkeypatch.setattr(bench_main, "RESULTS_DIR", results_dir)
    args = bench_main.parse_arguments(["--only", "jobs"])  # any name: the partial run says what it measured

    combined = bench_main.with_earlier_runs(partial, args)
    text = report.render(combined, tmp_path / "performance.md", tmp_path / "figures")

    assert [r["title"] for r in combined["results"]] == [
        "two sizes, measured again",
        "one size, measured again",
    ]
    assert [part["commit"] for part in combined["runs"]] == ["0123abc", "4567def", "89abcde"]
    assert "from more than one run" in text
    assert "`python -m bench --only sizes` → `bench/results/2026-12-07-only-sizes.json`, for sizes:" in text
    assert "`python -m bench` → `bench/results/2026-12-06.json`, for sizes, single:" in text
    assert bench_main.with_earlier_runs(whole, bench_main.parse_arguments([])) is whole


@pytest.mark.parametrize(
    "name, quick",
    [
        ("visits", {"sizes": [10_000, 50_000], "baseline_rows": 5_000}),
        ("sierra", {"sizes": [10_000, 50_000]}),
        ("enderturing", {"sessions": 5_000, "baseline_sessions": 500, "rounds": 1}),
        ("enderturing_api", {"sessions": 300, "baseline_sessions": 50, "memory_sizes": [1000, 3000]}),
        ("movies", {"films": 20_000, "small": 5_000, "baseline_sample": 1_000}),
        ("jobs", {"rows": [100_000, 300_000], "baseline_max_rows": 300_000}),
    ],
)
def test_each_benchmarks_quick_flag_sets_its_small_sizes(name, quick):
    import importlib

    parse = importlib.import_module(f"bench.{name}").parse_arguments
    full, smoke = parse([]), parse(["--quick"])
    assert {k: getattr(smoke, k) for k in quick} == quick
    assert all(getattr(full, k) != v for k, v in quick.items())
