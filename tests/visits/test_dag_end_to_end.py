"""The visits DAG end to end: real sshd, real PostgreSQL, dag.test()."""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from datetime import date, datetime

import pytest

from dev.visits_data import write_report
from tests.conftest import SHARED_DATA, task_states

pytestmark = pytest.mark.visits
SAMPLES = SHARED_DATA / "visits"


def expected_visitors(paths_in_load_order, reference: date) -> dict[str, tuple]:
    """Reference implementation of spec §5 over raw files (csv module, no pipeline code).

    The first visit is the minimum of the first file that gave the e-mail a visit: it is set
    when the visitor row is inserted and never changes afterwards.
    """
    visits: dict[str, list[date]] = defaultdict(list)
    first_visit: dict[str, date] = {}
    for path in paths_in_load_order:
        in_file: dict[str, list[date]] = defaultdict(list)
        for line in path.read_bytes().decode("ascii").splitlines()[1:]:
            for row in csv.reader([line]):
                if len(row) == 15 and row[5].strip() not in ("", "-"):
                    try:
                        day = datetime.strptime(row[5], "%d/%m/%Y %H:%M").date()
                    except ValueError:
                        continue
                    in_file[row[0].strip().lower()].append(day)
        for email, days in in_file.items():
            first_visit.setdefault(email, min(days))
            visits[email] += days
    return {
        email: (
            first_visit[email],
            max(days),
            len(days),
            sum(d.year == reference.year for d in days),
            sum((d.year, d.month) == (reference.year, reference.month) for d in days),
        )
        for email, days in visits.items()
    }


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="real sample reports not on this machine")
def test_real_sample_reports_load_exactly(visits):
    samples = sorted(SAMPLES.glob("report_*.txt"))
    for path in samples:
        visits.put(path.name, path.read_bytes())
    shas = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in samples}

    dag_run = visits.run(reference_date="2013-02-20")

    assert dag_run.state == "success", task_states(dag_run)
    records = {p.name: p.read_bytes().count(b"\n") - 1 for p in samples}
    assert visits.loads() == {name: [("COMPLETED", n, n, 0)] for name, n in records.items()}
    assert visits.counts()["statistics"] == sum(records.values()) == 2001
    assert visits.counts()["errors"] == 0
    # The one row with an empty `Fecha open` (but a click) is kept, and is not a visit.
    row = visits.query(
        "SELECT fecha_open, fecha_click, clicks FROM statistics WHERE email = 'biancammvi@yahoo.com'"
        " AND source_file = 'report_9.txt' AND line_number = 993"
    )
    assert row == [(None, datetime(2013, 2, 14, 20, 30), 1)]
    # Quoted multi-value fields stay whole (a naive split would have rejected these rows).
    assert visits.scalar("SELECT count(*) FROM statistics WHERE links LIKE '%,%' OR ips LIKE '%,%'") > 0
    # Visitor metrics equal the reference implementation, e-mails present in two files included.
    stored = {
        email: tuple(rest)
        for email, *rest in visits.query(
            "SELECT email, fechaprimeravisita, fechaultimavisita, visitastotales, visitasanioactual,"
            " visitasmesactual FROM visitor"
        )
    }
    load_order = [name for (name,) in visits.query("SELECT file_name FROM load_log ORDER BY load_id")]
    assert stored == expected_visitors([SAMPLES / name for name in load_order], date(2013, 2, 20))
    # Archived (one member, original bytes) and gone from the source.
    assert visits.remote_names() == []
    archived = visits.archive_members()
    assert sorted(archived) == sorted(
        f"{name[:-4]}_{stamp}.zip"
        for name, stamp in visits.query(
            "SELECT file_name, to_char(committed_at AT TIME ZONE 'UTC', 'YYYYMMDD\"T\"HH24MISS') FROM load_log"
        )
    )
    assert {member: sha for members in archived.values() for member, sha in members.items()} == shas


def test_generated_reports_load_with_rejected_rows(visits):
    paths = [
        write_report(visits.root / "gen" / f"report_{n}.txt", 1200, seed=n, invalid_every=40, column2=col2)
        for n, col2 in ((10, "jk"), (9, "fgh"))
    ]
    for path in paths:
        visits.put(path.name, path.read_bytes())

    dag_run = visits.run(reference_date="2024-05-20", dry_run=False)

    assert dag_run.state == "success", task_states(dag_run)
    assert visits.loads() == {
        "report_9.txt": [("COMPLETED", 1200, 1170, 30)],
        "report_10.txt": [("COMPLETED", 1200, 1170, 30)],
    }
    assert visits.query("SELECT file_name, column2_header, encoding FROM load_log ORDER BY file_name") == [
        ("report_10.txt", "jk", "utf-8"),
        ("report_9.txt", "fgh", "utf-8"),
    ]
    rules = dict(visits.query("SELECT rule, count(*) FROM errors GROUP BY rule"))
    assert rules == {
        "row.email": 10,
        "row.date": 10,
        "row.integer": 10,
        "row.flag": 10,
        "row.csv": 10,
        "row.field_count": 10,
    }
    raw = visits.query("SELECT raw_line FROM errors WHERE source_file = 'report_10.txt' AND line_number = 41")
    assert raw == [(paths[0].read_bytes().decode().split("\r\n")[40],)]
    stored = {
        email: tuple(rest)
        for email, *rest in visits.query(
            "SELECT email, fechaprimeravisita, fechaultimavisita, visitastotales, visitasanioactual,"
            " visitasmesactual FROM visitor"
        )
    }
    load_order = [name for (name,) in visits.query("SELECT file_name FROM load_log ORDER BY load_id")]
    assert load_order == ["report_9.txt", "report_10.txt"]  # ascending <n>, not name order
    by_name = {p.name: p for p in paths}
    assert stored == expected_visitors([by_name[n] for n in load_order], date(2024, 5, 20))
    assert visits.remote_names() == []


def test_dry_run_commits_and_touches_nothing(visits):
    path = write_report(visits.root / "gen" / "report_1.txt", 100, seed=1)
    visits.put(path.name, path.read_bytes())

    dag_run = visits.run(dry_run=True)

    assert dag_run.state == "success", task_states(dag_run)
    assert visits.counts() == {"load_log": 0, "statistics": 0, "errors": 0, "visitor": 0}
    assert visits.remote_names() == ["report_1.txt"]
    assert not list(visits.backup.iterdir())


def test_dry_run_leaves_loaded_data_counters_and_open_loads_as_they_were(visits):
    loaded = write_report(visits.root / "gen" / "report_1.txt", 80, seed=1)
    visits.put(loaded.name, loaded.read_bytes())
    assert visits.run(reference_date="2024-05-10").state == "success"
    # As after a crash between the source delete and closing the load: a real run would close it.
    visits.query("UPDATE load_log SET status = 'LOADED', finished_at = NULL RETURNING load_id")
    waiting = write_report(visits.root / "gen" / "report_2.txt", 40, seed=2)
    visits.put(waiting.name, waiting.read_bytes())
    tables = ("visitor", "load_log", "statistics", "errors")
    before = {t: visits.query(f"SELECT * FROM {t} ORDER BY 1, 2") for t in tables}  # noqa: S608
    archives = sorted(p.name for p in visits.backup.iterdir())

    # Another year: a refresh of the period counters would zero every visitor's year and month.
    dag_run = visits.run(reference_date="2025-02-01", dry_run=True)

    assert dag_run.state == "success", task_states(dag_run)
    assert {t: visits.query(f"SELECT * FROM {t} ORDER BY 1, 2") for t in tables} == before  # noqa: S608
    assert any(year_visits for *_, year_visits, _ in before["visitor"]), "no year counters to keep"
    assert visits.remote_names() == ["report_2.txt"]
    assert sorted(p.name for p in visits.backup.iterdir()) == archives

    # The next run without dry_run does all of it (the dry run's params do not carry over).
    assert visits.run(reference_date="2025-02-01").state == "success"
    assert visits.remote_names() == []
    assert visits.scalar("SELECT count(*) FROM load_log WHERE finished_at IS NULL") == 0
    assert visits.scalar("SELECT max(visitasanioactual) FROM visitor") == 0


def test_rerun_with_no_files_changes_nothing_and_young_or_foreign_files_wait(visits, airflow_var):
    airflow_var("sftp_visits_config", visits.config(min_file_age_s=60))
    path = write_report(visits.root / "gen" / "report_3.txt", 50, seed=3)
    visits.put(path.name, path.read_bytes())
    visits.put("report_4.txt", path.read_bytes(), age_s=0)  # still uploading
    visits.put("notes.txt", "not a report")
    visits.put("REPORT_5.txt", path.read_bytes())
    first = visits.run()
    assert first.state == "success", task_states(first)
    before = visits.counts()

    second = visits.run()

    assert second.state == "success"
    assert visits.counts() == before
    assert before["statistics"] + before["errors"] == 50
    assert visits.remote_names() == ["REPORT_5.txt", "notes.txt", "report_4.txt"]


def test_redelivery_same_bytes_is_duplicate_and_new_bytes_load_as_new(visits):
    path = write_report(visits.root / "gen" / "report_1.txt", 60, seed=1)
    visits.put(path.name, path.read_bytes())
    assert visits.run().state == "success"
    visitor_before = visits.query("SELECT * FROM visitor ORDER BY email")

    visits.put(path.name, path.read_bytes())
    assert visits.run().state == "success"

    assert [row[0] for row in visits.loads()["report_1.txt"]] == ["COMPLETED", "DUPLICATE"]
    assert visits.counts()["statistics"] + visits.counts()["errors"] == 60
    assert visits.query("SELECT * FROM visitor ORDER BY email") == visitor_before
    assert visits.remote_names() == []

    changed = write_report(visits.root / "gen2" / "report_1.txt", 30, seed=99)
    visits.put("report_1.txt", changed.read_bytes())
    assert visits.run().state == "success"

    assert [row[0] for row in visits.loads()["report_1.txt"]] == ["COMPLETED", "DUPLICATE", "COMPLETED"]
    assert visits.counts()["statistics"] + visits.counts()["errors"] == 90
    assert len(list(visits.backup.glob("report_1_*.zip"))) == 2
