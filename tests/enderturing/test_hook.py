"""EnderTuringHook against the fake server: auth, retries, errors, paging (spec §1.2–§1.5, §7)."""

from __future__ import annotations

import logging
import time
from datetime import date

import pytest

from dev.enderturing_server import FakeEnderTuring, generate_dataset, generate_session, start_server
from etlkit.common.errors import TransientError
from etlkit.enderturing.errors import EnderTuringRequestError
from etlkit.enderturing.extract import fetch_details, list_sessions
from etlkit.enderturing.filters import Pass, encode
from etlkit.enderturing.settings import EnderTuringSettings
from tests.enderturing.conftest import DAY, et_connection

pytestmark = pytest.mark.enderturing


def statuses(fake: FakeEnderTuring, path_regex: str) -> list[int]:
    return [e["status"] for e in fake.requests_to(path_regex)]


def test_one_login_for_a_long_lived_token(fake_et, hook_for):
    fake, _ = fake_et
    hook = hook_for()
    for _ in range(3):
        hook.get_dictionary("/labels")
    assert len(fake.requests_to("^/login")) == 1
    assert 401 not in statuses(fake, ".")
    assert all(e["headers"]["Authorization"].startswith("bearer ") for e in fake.requests_to("^/labels"))


def test_short_token_is_refreshed_before_every_call(fake_et, hook_for):
    fake, _ = fake_et
    fake.expires_in = 30  # already inside the 60 s refresh margin
    hook = hook_for()
    for _ in range(3):
        hook.get_dictionary("/labels")
    paths = [e["path"] for e in fake.journal]
    assert paths == ["/login/access-token", "/labels"] * 3
    assert 401 not in statuses(fake, ".")


def test_revoked_token_leads_to_exactly_one_relogin_under_concurrency(fake_et, hook_for, tmp_path):
    fake, _ = fake_et
    hook = hook_for()
    hook.get_dictionary("/labels")
    fake.revoke_tokens()
    sessions = [
        {"id": s["id"], "reviewers": s["reviewers"], "comments_count": 0} for s in fake.dataset.sessions
    ]
    from etlkit.enderturing.extract import ExtractReport

    report = ExtractReport()
    fetch_details(hook, sessions, EnderTuringSettings(), tmp_path / "details.ndjson", report, concurrency=4)
    assert len(fake.requests_to("^/login")) == 2
    assert report.detail_failures == 0 and report.detail_calls >= len(sessions)


def test_rejected_fresh_token_fails_after_a_single_relogin(fake_et, hook_for):
    fake, _ = fake_et
    hook = hook_for()
    fake.reject_all_tokens = True
    with pytest.raises(EnderTuringRequestError, match="401 again"):
        hook.get_dictionary("/labels")
    assert len(fake.requests_to("^/login")) == 2
    assert len(fake.requests_to("^/labels")) == 2


def test_bad_credentials_fail_after_one_login_request(fake_et, hook_for):
    fake, _ = fake_et
    hook = hook_for()
    fake.password = "changed-upstream"
    with pytest.raises(EnderTuringRequestError, match="login rejected"):
        hook.get_dictionary("/labels")
    assert len(fake.journal) == 1


def test_retry_after_beyond_the_cap_fails_without_waiting(fake_et, hook_for):
    fake, _ = fake_et
    fake.add_fault("^/labels$", 1, status=503, headers={"Retry-After": "3600"})
    with pytest.raises(
        EnderTuringRequestError, match="HTTP 503 asks to wait 3600s, more than retry_after_max_s=300s"
    ):
        hook_for().get_dictionary("/labels")
    assert statuses(fake, "^/labels$") == [503]


def test_429_waits_for_retry_after_then_succeeds(fake_et, hook_for):
    fake, _ = fake_et
    fake.add_fault("^/labels$", 1, status=429, headers={"Retry-After": "1"})
    assert len(hook_for().get_dictionary("/labels")) == 8
    first, second = fake.requests_to("^/labels$")
    assert second["time"] - first["time"] >= 1.0


def test_three_500s_then_success_make_four_requests(fake_et, hook_for):
    fake, _ = fake_et
    fake.add_fault("^/tags$", 3, status=500)
    hook_for().get_dictionary("/tags", 9999)
    assert statuses(fake, "^/tags$") == [500, 500, 500, 200]


def test_persistent_503_fails_after_max_attempts(fake_et, hook_for):
    fake, _ = fake_et
    fake.add_fault("^/tags$", 100, status=503)
    with pytest.raises(TransientError, match="503 after 4 attempts"):
        hook_for().get_dictionary("/tags")
    assert len(fake.requests_to("^/tags$")) == 4


def test_dropped_connection_and_read_timeout_are_retried(fake_et, hook_for):
    fake, _ = fake_et
    fake.add_fault("^/labels$", 1, action="drop")
    fake.add_fault("^/users$", 1, action="delay", delay_s=1.5)
    fake.add_fault("^/tags$", 1, action="truncate")  # dropped in the middle of the body
    hook = hook_for(timeout_s=0.5)
    assert hook.get_dictionary("/labels")
    assert hook.get_dictionary("/users", 999)
    assert hook.get_dictionary("/tags")
    assert len(fake.requests_to("^/labels$")) == 2 and len(fake.requests_to("^/users$")) == 2
    assert len(fake.requests_to("^/tags$")) == 2


@pytest.mark.parametrize("status", [400, 403, 422])
def test_other_4xx_fail_at_once_with_the_body(fake_et, hook_for, status):
    fake, _ = fake_et
    fake.add_fault("^/sessions$", 1, status=status, body={"detail": "forbidden for this tenant"})
    hook = hook_for()
    with pytest.raises(EnderTuringRequestError, match=f"HTTP {status}: .*forbidden for this tenant"):
        list(hook.iter_session_pages(encode("date_range,2024-06-26,2024-06-26||"), 500))
    assert len(fake.requests_to("^/sessions$")) == 1


def test_404_on_a_detail_endpoint_is_no_data(fake_et, hook_for):
    fake, _ = fake_et
    assert hook_for().get_session_detail("00000000-0000-4000-8000-000000000000", "summary") is None
    assert statuses(fake, "/summary$") == [404]


def test_non_json_success_is_a_contract_error_not_retried(fake_et, hook_for):
    fake, _ = fake_et
    fake.add_fault("^/labels$", 1, action="not_json")
    with pytest.raises(EnderTuringRequestError, match="not JSON"):
        hook_for().get_dictionary("/labels")
    assert len(fake.requests_to("^/labels$")) == 1


def test_secrets_stay_out_of_urls_and_logs(fake_et, hook_for, caplog):
    fake, _ = fake_et
    caplog.set_level(logging.DEBUG)
    fake.add_fault("^/labels$", 1, status=500)
    hook_for().get_dictionary("/labels")
    assert all(fake.password not in e["query"] and fake.password not in e["path"] for e in fake.journal)
    token = fake.requests_to("^/labels$")[-1]["headers"]["Authorization"].split()[1]
    assert fake.password not in caplog.text and token not in caplog.text


def test_dictionary_limits_and_truncation_warning(fake_et, hook_for, caplog):
    fake, _ = fake_et
    from etlkit.enderturing.extract import fetch_dictionaries

    fake.dataset.dictionaries["users"] = [{"id": i} for i in range(1, 1000)]  # exactly limit=999
    fetch_dictionaries(hook_for())
    requested = sorted(
        f"{e['path']}?{e['query']}".rstrip("?") for e in fake.journal if e["path"] != "/login/access-token"
    )
    assert requested == sorted(
        [
            "/agents?limit=999",
            "/tags?limit=9999",
            "/users?limit=999",
            "/categories",
            "/agent-groups",
            "/labels",
            "/scorecards",
        ]
    )
    assert "GET /users returned exactly limit=999" in caplog.text


def _big_morning(fake: FakeEnderTuring, count: int) -> None:
    import random

    rng = random.Random(3)
    sessions = [generate_session(rng, DAY) for _ in range(count)]
    for n, session in enumerate(sessions):
        session["start_dt"] = f"2024-06-26T{(n * 37) % 12:02d}:{n % 60:02d}:{(n * 7) % 60:02d}"
    fake.dataset.sessions = sessions


def test_pagination_reads_every_page_even_when_the_server_caps_limit(fake_et, hook_for, tmp_path):
    fake, _ = fake_et
    _big_morning(fake, 1234)
    hook = hook_for()
    distinct, _ = list_sessions(
        hook, [Pass("main", (DAY,))], EnderTuringSettings(page_size=500), tmp_path / "a"
    )
    assert len(distinct) == 1234
    skips = [int(e["query"].split("&")[0].split("=")[1]) for e in fake.requests_to("^/sessions$")]
    assert skips[:3] == [0, 500, 1000]
    fake.reset_journal()
    fake.max_page_size = 200
    distinct, _ = list_sessions(
        hook, [Pass("main", (DAY,))], EnderTuringSettings(page_size=500), tmp_path / "b"
    )
    assert len(distinct) == 1234


@pytest.mark.parametrize(("overload", "limit"), [(None, None), (1000, None), (None, 5000)])
def test_split_guard_keeps_listings_below_the_cap(fake_et, hook_for, tmp_path, overload, limit):
    fake, _ = fake_et
    _big_morning(fake, 2500)
    fake.overload_threshold = overload
    settings = EnderTuringSettings(
        page_size=500, window_cap=1000, limit_sessions=limit
    )  # a limit above the cap
    distinct, report = list_sessions(hook_for(), [Pass("main", (DAY,))], settings, tmp_path)
    assert sorted(s["id"] for s in distinct) == sorted(s["id"] for s in fake.dataset.sessions)
    assert sum(report.windows["main"].values()) == 2500  # each session once: no window overlaps
    skips = [int(e["query"].split("&")[0].split("=")[1]) for e in fake.requests_to("^/sessions$")]
    assert max(skips) < 1000


def test_limit_sessions_caps_each_pass(fake_et, hook_for, tmp_path):
    fake, _ = fake_et
    fake.dataset = generate_dataset([DAY, date(2024, 6, 25)], 300, seed=1)
    settings = EnderTuringSettings(page_size=500, limit_sessions=200)
    passes = [Pass("main", (DAY,)), Pass("older", (date(2024, 6, 25), DAY))]
    distinct, report = list_sessions(hook_for(), passes, settings, tmp_path)
    assert {name: sum(w.values()) for name, w in report.windows.items()} == {"main": 200, "older": 200}
    assert all("limit=200" in e["query"] for e in fake.requests_to("^/sessions$"))


def test_tls_is_verified_by_default(airflow_conn, tmp_path):
    from etlkit.common.errors import ConfigurationError
    from etlkit.hooks.enderturing import EnderTuringHook

    fake = FakeEnderTuring(generate_dataset([DAY], 1))
    server = start_server(fake, tls_dir=tmp_path)
    try:
        airflow_conn("et_tls", et_connection(server, fake))
        with pytest.raises(ConfigurationError, match="TLS certificate verification failed"):
            EnderTuringHook("et_tls").get_dictionary("/labels")
        assert fake.journal == []  # the handshake failed: not one request reached the API, no retries
        airflow_conn("et_tls", et_connection(server, fake, ca_bundle=str(server.certificate)))
        assert len(EnderTuringHook("et_tls").get_dictionary("/labels")) == 8
        airflow_conn("et_tls", et_connection(server, fake, verify_ssl=False))
        assert len(EnderTuringHook("et_tls").get_dictionary("/labels")) == 8
    finally:
        server.stop()


def test_static_token_mode_never_logs_in_and_a_401_fails(fake_et, hook_for):
    fake, _ = fake_et
    with pytest.raises(EnderTuringRequestError, match="static token rejected"):
        hook_for(token="not-issued-by-the-server").get_dictionary("/labels")
    assert [e["path"] for e in fake.journal] == ["/labels"]
    assert fake.journal[0]["headers"]["Authorization"] == "Bearer not-issued-by-the-server"


def test_detail_4xx_are_counted_and_fail_past_the_limit(fake_et, hook_for, tmp_path):
    from etlkit.common.errors import BadInputError
    from etlkit.enderturing.extract import ExtractReport
    from etlkit.enderturing.staging import read_ndjson

    fake, _ = fake_et
    sessions = [{"id": s["id"], "reviewers": [], "comments_count": 0} for s in fake.dataset.sessions[:10]]
    fake.add_fault("/summary$", 2, status=403)
    report = ExtractReport()
    strict = EnderTuringSettings(max_detail_failures=2)
    fetch_details(hook_for(), sessions, strict, tmp_path / "d.ndjson", report, concurrency=4)
    assert (report.detail_calls, report.detail_failures) == (10, 2)
    assert len(list(read_ndjson(tmp_path / "d.ndjson"))) == 8  # failed sessions keep their stored rows
    fake.add_fault("/summary$", 3, status=422)
    with pytest.raises(BadInputError, match="max_detail_failures=2"):
        fetch_details(hook_for(), sessions, strict, tmp_path / "e.ndjson", ExtractReport(), concurrency=4)


def test_credentials_rejected_during_detail_calls_fail_the_task_at_once(fake_et, hook_for, tmp_path):
    from etlkit.enderturing.errors import EnderTuringLoginError
    from etlkit.enderturing.extract import ExtractReport

    fake, _ = fake_et
    hook = hook_for()
    hook.get_dictionary("/labels")
    fake.password = "rotated-upstream"
    fake.revoke_tokens()
    sessions = [{"id": s["id"], "reviewers": [], "comments_count": 0} for s in fake.dataset.sessions]
    lenient, concurrency = EnderTuringSettings(max_detail_failures=len(sessions)), 4
    with pytest.raises(EnderTuringLoginError, match="login rejected"):
        fetch_details(
            hook, sessions, lenient, tmp_path / "d.ndjson", ExtractReport(), concurrency=concurrency
        )
    assert len(fake.requests_to("^/login")) == 2  # the first login, then one rejected re-login
    # Bounded by the concurrency (calls in flight, and one more each before the queue is cancelled),
    # not by the 40 sessions; and no per-session failure was counted toward max_detail_failures.
    assert len(fake.requests_to("/summary$")) <= 2 * concurrency < len(sessions)


def test_comment_counts_sent_as_text_are_read(fake_et, hook_for, tmp_path):
    from etlkit.enderturing.extract import ExtractReport

    fake, _ = fake_et
    first, second, third = (s["id"] for s in fake.dataset.sessions[:3])
    sessions = [
        {"id": first, "reviewers": [], "comments_count": "2"},
        {"id": second, "reviewers": [], "comments_count": "0"},
        {"id": third, "reviewers": [], "comments_count": "several"},
    ]
    settings = EnderTuringSettings(fetch_summaries=False, fetch_comments=True)
    fetch_details(hook_for(), sessions, settings, tmp_path / "d.ndjson", ExtractReport(), concurrency=4)
    asked = {e["path"].split("/")[2] for e in fake.requests_to("/comments$")}
    assert asked == {first, third}  # an unreadable count is asked rather than assumed zero


def test_warehouse_must_be_postgres(airflow_conn):
    from etlkit.common.errors import ConfigurationError
    from etlkit.operators.enderturing import warehouse

    airflow_conn("not_postgres", {"conn_type": "mysql", "host": "127.0.0.1", "login": "x"})
    with pytest.raises(ConfigurationError, match="must be PostgreSQL"):
        warehouse("not_postgres")


def test_detail_calls_are_submitted_a_bounded_number_ahead_and_answered_in_order():
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from etlkit.enderturing.extract import bounded_map

    release_first = threading.Event()
    pulled: list[int] = []

    def items():
        for n in range(100):
            pulled.append(n)
            yield n

    def call(n: int) -> int:
        if n == 0:
            release_first.wait(5)  # one slow call at the head of the queue
        return n * 2

    with ThreadPoolExecutor(2) as pool:
        results = bounded_map(pool, call, items(), ahead=8)
        consumer = threading.Thread(target=lambda: pulled.append(("first", next(results))))
        consumer.start()
        consumer.join(0.5)
        assert len(pulled) <= 9  # not the whole list while the first answer is outstanding
        release_first.set()
        consumer.join(5)
        assert pulled[-1] == ("first", 0)
        assert list(results) == [n * 2 for n in range(1, 100)]


def test_test_connection_logs_in_and_reads_one_label(fake_et, hook_for):
    fake, _ = fake_et
    hook = hook_for()
    ok, message = hook.test_connection()
    assert ok is True, message
    assert [e["path"] for e in fake.journal] == ["/login/access-token", "/labels"]
    assert hook.conn_settings.retry.max_attempts == 4  # the connection's own, back after the test


@pytest.mark.parametrize("problem", ["wrong password", "wrong token", "no server"])
def test_test_connection_reports_a_bad_connection_without_its_secrets(fake_et, airflow_conn, problem):
    from etlkit.hooks.enderturing import EnderTuringHook

    fake, server = fake_et
    connection = et_connection(server, fake)
    secret = "not-the-password"
    if problem == "wrong password":
        connection["password"] = secret
    elif problem == "wrong token":
        connection["extra"]["token"] = secret
    else:
        connection["host"] = "http://127.0.0.1:9"  # discard port: nothing answers
    airflow_conn("et_bad", connection)

    started = time.monotonic()
    ok, message = EnderTuringHook("et_bad").test_connection()

    assert ok is False
    assert {"wrong password": "login rejected", "wrong token": "401", "no server": "ConnectionError"}[
        problem
    ] in message
    assert secret not in message and fake.password not in message
    assert time.monotonic() - started < 5  # one attempt per call: the button answers at once


def test_building_the_hook_reads_no_connection():
    from airflow.sdk.exceptions import AirflowNotFoundException

    from etlkit.hooks.enderturing import EnderTuringHook

    hook = EnderTuringHook("no_such_connection")  # a DAG file or the UI may build one anywhere
    with pytest.raises(AirflowNotFoundException):
        hook.get_conn()
