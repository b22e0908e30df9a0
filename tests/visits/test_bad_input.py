"""Bad input through the real DAG: each file gets its specified outcome, good rows still load."""

from __future__ import annotations

import hashlib

import pytest

from dev.visits_data import header
from tests.conftest import task_states

pytestmark = pytest.mark.visits

SPEC_EXAMPLE = [
    "ana@example.com,,,,03/05/2024 09:15,-,0,0,-,0,0,-,-,-,-",
    "bob@example.org,,HARD,,03/05/2024 09:15,-,0,0,-,0,0,-,-,-,-",
    "carla@example.net,,,,03/05/2024 09:15,03/05/2024 11:02,2,0,03/05/2024 11:04,1,0,5,198.51.100.7,Chrome Generic,Win10",
    'dan@example.com,,,SI,03/05/2024 09:15,04/05/2024 08:40,1,0,04/05/2024 08:41,2,0,"5,5",203.0.113.20,Safari 17.0,MacOSX',
    'eva@example.com,,,,03/05/2024 09:15,06/05/2024 19:30,3,1,-,0,0,-,"192.0.2.10,192.0.2.44","Firefox 125.0,","Android,unknown"',
    "fer@example.org,,,,03/05/2024 09:15,,0,0,-,0,0,-,-,,-",
]
GOOD = "ok@example.com,,,,03/05/2024 09:15,-,0,0,-,0,0,-,-,-,-"
BAD_ROWS = {
    "not-an-email,,,,03/05/2024 09:15,-,0,0,-,0,0,-,-,-,-": "row.email",
    "a@b,,,,03/05/2024 09:15,-,0,0,-,0,0,-,-,-,-": "row.email",
    "a..b@example.com,,,,03/05/2024 09:15,-,0,0,-,0,0,-,-,-,-": "row.email",
    "x@example.com,,,,31/02/2024 10:00,-,0,0,-,0,0,-,-,-,-": "row.date",
    "x@example.com,,,,03/05/2024 09:15,8/2/2024 18:30,0,0,-,0,0,-,-,-,-": "row.date",
    "x@example.com,,,,03/05/2024 09:15,-,0,0,08/02/2024 18:30:00,0,0,-,-,-,-": "row.date",
    "x@example.com,,,,2024-02-08 18:30,-,0,0,-,0,0,-,-,-,-": "row.date",
    "x@example.com,,,,08/02/2013 24:00,-,0,0,-,0,0,-,-,-,-": "row.date",
    "x@example.com,,,,03/05/2024 09:15,-,1.5,0,-,0,0,-,-,-,-": "row.integer",
    "x@example.com,,,,03/05/2024 09:15,-,0,-3,-,0,0,-,-,-,-": "row.integer",
    "x@example.com,,,,03/05/2024 09:15,-,0,0,-,abc,0,-,-,-,-": "row.integer",
    "x@example.com,,XYZ,,03/05/2024 09:15,-,0,0,-,0,0,-,-,-,-": "row.flag",
    "x@example.com,,,true,03/05/2024 09:15,-,0,0,-,0,0,-,-,-,-": "row.flag",
    'x@example.com,,,,03/05/2024 09:15,-,0,0,-,0,0,"5,5,-,-,-': "row.csv",
    "x@example.com,,,,03/05/2024 09:15,-,0,0,-,0,0,-,-,-": "row.field_count",
    "x@example.com,,,,03/05/2024 09:15,-,0,0,-,0,0,-,-,-,-,-": "row.field_count",
    "": "row.field_count",
}


def crlf(lines: list[str]) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode()


def test_each_bad_file_gets_its_outcome_in_one_run(visits):
    files = {
        "report_1.txt": crlf([header().replace("Baja", "Bajas"), GOOD]),
        "report_2.txt": crlf([header().rsplit(",", 1)[0], GOOD]),  # 14 columns
        "report_3.txt": crlf([header() + ",Extra", GOOD]),  # 16 columns
        "report_4.txt": b"",
        "report_5.txt": crlf([header("jyv")]),
        "report_6.txt": (header("") + "\n" + "\n".join([GOOD, *BAD_ROWS, GOOD])).encode(),  # LF, no final EOL
        "report_7.txt": crlf([header(), GOOD])
        + b"y@example.com,,,,03/05/2024 09:15,-,0,0,-,0,0,-,-,Navegador \xcd,-\r\n",
        "report_8.txt": b"\xef\xbb\xbf" + (header("fgh") + "\n" + GOOD + "\n").encode(),
        "report_9.txt": crlf(
            [
                "EMAIL,,Badmail, Baja ,Fecha Envío,FECHA OPEN,Opens,Opens  virales,Fecha click,Clicks,"
                "Clicks virales,Links,IPs,Navegadores,Plataformas",
                GOOD,
            ]
        ),
        "report_10.txt": crlf([header(), *SPEC_EXAMPLE]),
    }
    for name, content in files.items():
        visits.put(name, content)
    originals = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}

    dag_run = visits.run()

    assert dag_run.state == "success", task_states(dag_run)
    loads = {name: rows[0] for name, rows in visits.loads().items()}
    assert loads == {
        "report_1.txt": ("QUARANTINED", 0, 0, 0),
        "report_2.txt": ("QUARANTINED", 0, 0, 0),
        "report_3.txt": ("QUARANTINED", 0, 0, 0),
        "report_4.txt": ("QUARANTINED", 0, 0, 0),
        "report_5.txt": ("COMPLETED", 0, 0, 0),
        "report_6.txt": ("COMPLETED", 2 + len(BAD_ROWS), 2, len(BAD_ROWS)),
        "report_7.txt": ("COMPLETED", 2, 2, 0),
        "report_8.txt": ("COMPLETED", 1, 1, 0),
        "report_9.txt": ("COMPLETED", 1, 1, 0),
        "report_10.txt": ("COMPLETED", 6, 6, 0),
    }
    reasons = dict(
        visits.query("SELECT file_name, split_part(reason, ':', 1) FROM load_log WHERE reason IS NOT NULL")
    )
    assert reasons == {
        "report_1.txt": "layout.header_name",
        "report_2.txt": "layout.column_count",
        "report_3.txt": "layout.column_count",
        "report_4.txt": "layout.empty",
    }
    assert "expected 'baja', found 'Bajas'" in visits.scalar(
        "SELECT message FROM errors WHERE source_file = 'report_1.txt' AND line_number = 1"
    )
    # Rejected files: one errors row each (line 1), a byte-identical quarantine copy, gone at the source.
    assert visits.query(
        "SELECT source_file, count(*), min(line_number) FROM errors WHERE source_file IN"
        " ('report_1.txt','report_2.txt','report_3.txt','report_4.txt') GROUP BY 1 ORDER BY 1"
    ) == [(name, 1, 1) for name in ("report_1.txt", "report_2.txt", "report_3.txt", "report_4.txt")]
    quarantined = {
        p.name.rsplit("_", 1)[0]: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in visits.quarantine.iterdir()
    }
    assert quarantined == {f"report_{n}": originals[f"report_{n}.txt"] for n in (1, 2, 3, 4)}
    assert visits.remote_names() == []
    assert len(list(visits.backup.glob("*.zip"))) == 6

    # Row errors: one per bad line, with the exact physical line number and the raw line verbatim.
    errors = visits.query(
        "SELECT line_number, raw_line, rule FROM errors WHERE source_file = 'report_6.txt' ORDER BY line_number"
    )
    assert errors == [(number, raw, rule) for number, (raw, rule) in enumerate(BAD_ROWS.items(), start=3)]
    assert (
        visits.scalar(
            "SELECT message FROM errors WHERE source_file = 'report_6.txt' AND rule = 'row.date' ORDER BY line_number LIMIT 1"
        )
        == "Fecha envio: '31/02/2024 10:00' is not a valid dd/mm/yyyy HH:MM date-time"
    )

    encodings = dict(
        visits.query(
            "SELECT file_name, encoding FROM load_log WHERE file_name IN ('report_7.txt','report_8.txt')"
        )
    )
    assert encodings == {"report_7.txt": "latin-1", "report_8.txt": "utf-8"}
    assert visits.scalar("SELECT navegadores FROM statistics WHERE email = 'y@example.com'") == "Navegador Í"
    assert dict(
        visits.query(
            "SELECT file_name, column2_header FROM load_log WHERE file_name IN ('report_5.txt','report_8.txt','report_9.txt')"
        )
    ) == {
        "report_5.txt": "jyv",
        "report_8.txt": "fgh",
        "report_9.txt": "",
    }
    # rows_read = rows_loaded + rows_rejected = table counts, for every load.
    mismatches = visits.query(
        "SELECT l.load_id FROM load_log l WHERE l.rows_loaded <> (SELECT count(*) FROM statistics s WHERE s.load_id = l.load_id)"
        " OR (l.status <> 'QUARANTINED' AND l.rows_rejected <> (SELECT count(*) FROM errors e WHERE e.load_id = l.load_id))"
    )
    assert mismatches == []
    # The monthly report equals the sums over that month's load_log rows.
    assert visits.query("SELECT * FROM load_log_monthly") == visits.query(
        "SELECT date_trunc('month', coalesce(committed_at, started_at) AT TIME ZONE 'UTC')::date,"
        " count(*) FILTER (WHERE status IN ('LOADED','COMPLETED')),"
        " count(*) FILTER (WHERE status IN ('REJECTED','QUARANTINED')),"
        " count(*) FILTER (WHERE status = 'DUPLICATE'), count(*) FILTER (WHERE status = 'FAILED'),"
        " sum(rows_read), sum(rows_loaded), sum(rows_rejected),"
        " count(*) FILTER (WHERE status = 'GIVEN_UP') FROM load_log GROUP BY 1"
    )
    assert visits.query("SELECT files_loaded, files_rejected, rows_read FROM load_log_monthly") == [
        (6, 4, 29)
    ]


def test_spec_example_rows_and_visitors(visits):
    visits.put("report_1.txt", crlf([header(), *SPEC_EXAMPLE]))

    assert visits.run(reference_date="2024-05-10").state == "success"

    rows = visits.query(
        "SELECT email, badmail, baja, fecha_open IS NOT NULL, links, ips, navegadores, plataformas"
        " FROM statistics ORDER BY line_number"
    )
    assert rows == [
        ("ana@example.com", False, False, False, None, None, None, None),
        ("bob@example.org", True, False, False, None, None, None, None),
        ("carla@example.net", False, False, True, "5", "198.51.100.7", "Chrome Generic", "Win10"),
        ("dan@example.com", False, True, True, "5,5", "203.0.113.20", "Safari 17.0", "MacOSX"),
        (
            "eva@example.com",
            False,
            False,
            True,
            None,
            "192.0.2.10,192.0.2.44",
            "Firefox 125.0,",
            "Android,unknown",
        ),
        ("fer@example.org", False, False, False, None, None, None, None),
    ]
    assert visits.query("SELECT * FROM visitor_report ORDER BY email") == [
        ("carla@example.net", "20240503", "20240503", 1, 1, 1),
        ("dan@example.com", "20240504", "20240504", 1, 1, 1),
        ("eva@example.com", "20240506", "20240506", 1, 1, 1),
    ]
