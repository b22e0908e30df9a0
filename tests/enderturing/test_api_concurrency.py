"""Per-session calls under API latency and a rate limit (issue 16), against the local server.

The concurrency setting bounds the calls in flight as the server counts them; a 429 pauses every
worker until its Retry-After has passed, and the run still fetches every session's details. No
timing assertions: the figures are the benchmark's (bench/enderturing_api.py).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from dev.enderturing_server import FakeEnderTuring
from etlkit.common.errors import ConfigurationError
from etlkit.enderturing import staging
from etlkit.enderturing.extract import ExtractReport, fetch_details, list_sessions
from etlkit.enderturing.filters import Pass
from etlkit.enderturing.settings import EnderTuringSettings
from tests.conftest import REPO_ROOT, task_states
from tests.enderturing.conftest import DAY, LOGICAL_DATE, et_connection

pytestmark = pytest.mark.enderturing


def extract(hook, work: Path) -> ExtractReport:
    """What sync_sessions does before the transform: list the day, then the per-session calls."""
    settings = EnderTuringSettings()
    distinct, report = list_sessions(hook, [Pass("main", (DAY,))], settings, work)
    fetch_details(
        hook, distinct, settings, work / staging.DETAILS_FILE, report, concurrency=hook.detail_concurrency
    )
    return report


def expected_calls(fake: FakeEnderTuring) -> set[tuple[str, str]]:
    sessions = fake.dataset.sessions
    return {(s["id"], "summary") for s in sessions} | {
        (s["id"], "scores") for s in sessions if s["reviewers"]
    }


def staged_calls(work: Path) -> list[tuple[str, str]]:
    return [(r["session_id"], r["endpoint"]) for r in staging.read_ndjson(work / staging.DETAILS_FILE)]


@pytest.mark.parametrize("concurrency", [1, 3, 6])
def test_calls_in_flight_never_exceed_the_setting(fake_et, hook_for, tmp_path, concurrency):
    fake, _ = fake_et
    fake.latency_ms = 30  # every call overlaps the others: a client without a bound would exceed it
    hook = hook_for(detail_concurrency=concurrency)
    fake.reset_stats()

    report = extract(hook, tmp_path)

    assert fake.stats.max_in_flight == concurrency  # reached (the workers overlap), never exceeded
    assert sorted(staged_calls(tmp_path)) == sorted(expected_calls(fake))
    assert report.detail_failures == 0


def test_a_429_pauses_every_worker_until_retry_after_then_all_resume(fake_et, hook_for, tmp_path):
    fake, _ = fake_et
    fake.latency_ms = 20
    concurrency = 4
    hook = hook_for(detail_concurrency=concurrency)
    fake.add_fault(r"/summary$", 1, status=429, headers={"Retry-After": "1"})

    extract(hook, tmp_path)

    limited = [e for e in fake.journal if e.get("status") == 429]
    assert len(limited) == 1
    refused_at = limited[0]["answered"]
    later = sorted(e["time"] for e in fake.journal if e["time"] > refused_at)
    # Only calls sent before the client read the 429 (one per other worker at most) arrive within
    # Retry-After of the answer; everything else waits for it, the refused call's retry included.
    within = [t for t in later if t < refused_at + 1.0]
    assert len(within) <= concurrency - 1
    assert len(later) - len(within) > len(within)  # the run went on after the pause
    assert hook.pause_gate.pauses == 1
    assert sorted(staged_calls(tmp_path)) == sorted(expected_calls(fake))  # the refused call too


def test_a_rate_limited_run_completes_without_a_429_storm(fake_et, hook_for, tmp_path):
    fake, _ = fake_et
    fake.latency_ms = 10
    concurrency, limit = 4, 15  # 4 workers at 10 ms could send ~400 calls/s: the limit bites
    fake.set_rate_limit(limit, window_s=1.0)
    hook = hook_for(detail_concurrency=concurrency, max_attempts=10)
    fake.reset_stats()

    report = extract(hook, tmp_path)

    stats = fake.stats
    assert stats.rate_limited >= 1  # the limit was reached, so the pause was exercised
    windows = math.ceil(stats.accepted / limit)  # the least number of limit windows the run took
    assert stats.rate_limited <= concurrency * windows
    assert stats.max_in_flight <= concurrency
    assert sorted(staged_calls(tmp_path)) == sorted(expected_calls(fake))
    assert report.detail_failures == 0


def test_the_default_concurrency_is_the_documented_one(hook_for):
    from etlkit.hooks.enderturing import DEFAULT_DETAIL_CONCURRENCY

    hook = hook_for()
    assert hook.detail_concurrency == DEFAULT_DETAIL_CONCURRENCY == 4
    docs = (REPO_ROOT / "docs" / "enderturing.md").read_text()
    assert re.search(r"`detail_concurrency` \((\d+)\)", docs).group(1) == str(hook.detail_concurrency)


@pytest.mark.parametrize("value", [0, 65, "four", 2.5])
def test_a_concurrency_out_of_range_is_refused_with_the_remedy(hook_for, value):
    with pytest.raises(ConfigurationError, match=r"detail_concurrency must be an integer from 1 to 64"):
        hook_for(detail_concurrency=value).get_conn()  # the connection is read at first use


def test_the_dag_takes_the_concurrency_from_the_connection(et_airflow, airflow_conn, fake_et, run_dag):
    fake, server = fake_et
    fake.latency_ms = 30
    airflow_conn("enderturing_default", et_connection(server, fake, detail_concurrency=2))

    dr = run_dag("enderturing_to_warehouse", conf={"run_resync": False}, logical_date=LOGICAL_DATE)

    assert dr.state == "success", task_states(dr)
    assert fake.stats.max_in_flight == 2
    details = {(e["path"].split("/")[2], e["path"].split("/")[3]) for e in fake.requests_to(r"^/sessions/")}
    assert details == expected_calls(fake)
