"""Spec §2-§3 rules as plain functions (no database, no SFTP)."""

from __future__ import annotations

import pytest

from dev.visits_data import header
from etlkit.common.errors import ConfigurationError
from etlkit.visits.files import iter_lines, stream_to_staging, write_verified_copy, write_verified_zip
from etlkit.visits.settings import VisitsSettings
from etlkit.visits.validation import LayoutError, Rejection, check_header, validate_record

pytestmark = pytest.mark.visits
LIMIT = 65_536
ROW = "carla@example.net,,,,03/05/2024 09:15,03/05/2024 11:02,2,0,03/05/2024 11:04,1,0,5,198.51.100.7,Chrome Generic,Win10"


@pytest.mark.parametrize("column2", ["jk", "jyv", "fgh", ""])
def test_header_column2_is_free(column2):
    assert check_header(header(column2)) == column2


@pytest.mark.parametrize(
    "line",
    [
        header().replace("email", "EMAIL"),
        header().replace("Fecha envio", "Fecha Envío"),
        header().replace("Baja", " Baja "),
        header().replace("Fecha envio", "FECHA  ENVIO"),
    ],
)
def test_header_names_are_normalised(line):
    check_header(line)


@pytest.mark.parametrize(
    "line, rule",
    [
        (None, "layout.empty"),
        (header().replace("Baja", "Bajas"), "layout.header_name"),
        (header().replace("Fecha envio", "Fecha_envio"), "layout.header_name"),
        (header().rsplit(",", 1)[0], "layout.column_count"),
        (header() + ",x", "layout.column_count"),
        ('email,"jk,' + header()[9:], "layout.header_csv"),
    ],
)
def test_bad_headers(line, rule):
    with pytest.raises(LayoutError) as error:
        check_header(line)
    assert error.value.rejection.rule == rule


def test_valid_row_converts_types():
    assert validate_record(ROW, LIMIT) == (
        "carla@example.net",
        None,
        "f",
        "f",
        "2024-05-03 09:15",
        "2024-05-03 11:02",
        "2",
        "0",
        "2024-05-03 11:04",
        "1",
        "0",
        "5",
        "198.51.100.7",
        "Chrome Generic",
        "Win10",
    )


def test_flags_map_exact_values_case_insensitively():
    row = "A@Example.COM,,hard,si,03/05/2024 09:15,-,0,0,-,0,0,-,-,-,-"
    result = validate_record(row, LIMIT)
    assert (result[0], result[2], result[3]) == ("a@example.com", "t", "t")


def test_first_failing_rule_decides_and_message_names_column_and_value():
    row = "not-an-email,,XYZ,,31/02/2024 10:00,-,x,0,-,0,0,-,-,-,-"
    assert validate_record(row, LIMIT) == Rejection(
        "row.email", "email: 'not-an-email' is not a valid e-mail address"
    )
    row = "a@example.com,,,,03/05/2024 09:15,31/02/2024 10:00,0,0,-,0,0,-,-,-,-"
    assert validate_record(row, LIMIT) == Rejection(
        "row.date", "Fecha open: '31/02/2024 10:00' is not a valid dd/mm/yyyy HH:MM date-time"
    )


@pytest.mark.parametrize(
    "line, rule",
    [
        ("x" * 70_000, "row.too_long"),
        ("a@example.com,\0,,,03/05/2024 09:15,-,0,0,-,0,0,-,-,-,-", "row.csv"),
        ('a@example.com,,,,03/05/2024 09:15,-,0,0,-,0,0,"x"y,-,-,-', "row.csv"),
        ("a" * 64 + "@example.com,,,,03/05/2024 09:15,-,0,0,-,0,0,-,-,-,-", None),
        ("a" * 65 + "@example.com,,,,03/05/2024 09:15,-,0,0,-,0,0,-,-,-,-", "row.email"),
        ("a@example.com,,,,03/05/2024 09:15,-,2147483648,0,-,0,0,-,-,-,-", "row.integer"),
        ("a@example.com,,,,03/05/2024 09:15,-,2147483647,0,-,0,0,-,-,-,-", None),
        ("a@example.com,,-,-,03/05/2024 09:15,-,-,,-,-,,-,-,-,-", None),
    ],
)
def test_row_rules(line, rule):
    result = validate_record(line, LIMIT)
    assert (result.rule if isinstance(result, Rejection) else None) == rule


def test_lines_crlf_lf_bom_and_missing_final_terminator(tmp_path):
    path = tmp_path / "r.txt"
    path.write_bytes(b"\xef\xbb\xbfh1\r\nl2\nl3\r\n\r\nl5")
    assert list(iter_lines(path, "utf-8", LIMIT)) == [(1, "h1"), (2, "l2"), (3, "l3"), (4, ""), (5, "l5")]


def test_overlong_line_is_cut_and_next_line_kept(tmp_path):
    path = tmp_path / "r.txt"
    path.write_bytes(b"h\r\n" + b"x" * 500 + b"\r\nnext\r\n")
    lines = list(iter_lines(path, "utf-8", 100))
    assert [n for n, _ in lines] == [1, 2, 3] and lines[2] == (3, "next")
    assert validate_record(lines[1][1], 100).rule == "row.too_long"


def test_download_chooses_encoding_and_checks_size(tmp_path):
    import io

    staged = stream_to_staging(io.BytesIO(b"caf\xe9\r\n"), tmp_path / "a.txt", 6)
    assert staged.encoding == "latin-1" and staged.size == 6
    assert stream_to_staging(io.BytesIO("café".encode()), tmp_path / "b.txt", 5).encoding == "utf-8"
    with pytest.raises(Exception, match="the server said 9"):
        stream_to_staging(io.BytesIO(b"short"), tmp_path / "c.txt", 9)
    assert not (tmp_path / "c.txt").exists() and not (tmp_path / "c.txt.part").exists()


def test_archive_is_reused_when_identical_and_never_overwritten(tmp_path):
    import hashlib

    source = tmp_path / "report_1.txt"
    source.write_bytes(b"data")
    sha = hashlib.sha256(b"data").hexdigest()
    target = tmp_path / "bk" / "report_1_x.zip"
    assert write_verified_zip(source, target, "report_1.txt", sha) is True
    assert write_verified_zip(source, target, "report_1.txt", sha) is False
    other = tmp_path / "other.txt"
    other.write_bytes(b"different")
    with pytest.raises(Exception, match="refusing to overwrite"):
        write_verified_zip(other, target, "report_1.txt", hashlib.sha256(b"different").hexdigest())
    copy = tmp_path / "q" / "report_1_x.txt"
    assert write_verified_copy(source, copy, sha) is True and copy.read_bytes() == b"data"


def test_csv_fast_path_equals_the_csv_module_on_random_lines():
    import csv
    import random

    from etlkit.visits.validation import parse_csv_line

    rng = random.Random(1)
    for _ in range(50_000):
        line = "".join(rng.choice("ab,\"\t\r -\\'") for _ in range(rng.randrange(0, 12)))
        try:
            rows = list(csv.reader((line,), strict=True))
            expected = None if len(rows) > 1 else (rows[0] if rows else [])
        except csv.Error:
            expected = None
        assert parse_csv_line(line) == expected, line


def test_listing_is_in_ascending_report_number_and_skips_young_and_foreign_files():
    from types import SimpleNamespace

    from etlkit.visits.process import list_eligible

    def entry(name, mtime, mode=0o100644):
        return SimpleNamespace(filename=name, st_mode=mode, st_mtime=mtime, st_size=1)

    listing = [
        entry("report_10.txt", 0),
        entry("report_9.txt", 0),
        entry("report_2.txt", 0),
        entry("report_11.txt", 990),  # 10 s old, still uploading
        entry("REPORT_3.txt", 0),
        entry("report_4.txt.part", 0),
        entry("report_5.txt", 0, mode=0o040755),  # a directory
    ]
    sftp = SimpleNamespace(listdir_attr=lambda directory: listing)
    eligible, names = list_eligible(sftp, VisitsSettings(), now=1000)
    assert [f.name for f in eligible] == ["report_2.txt", "report_9.txt", "report_10.txt"]
    assert len(names) == len(listing)

    # A run's file_pattern narrows the configured pattern; it cannot widen it to foreign files.
    narrowed, _ = list_eligible(sftp, VisitsSettings(), r".*_1\d\.", now=1000)
    assert [f.name for f in narrowed] == ["report_10.txt"]
    widened, _ = list_eligible(sftp, VisitsSettings(), r"(?i)report_\d+\.txt.*", now=1000)
    assert [f.name for f in widened] == ["report_2.txt", "report_9.txt", "report_10.txt"]
    with pytest.raises(ConfigurationError, match=r"param file_pattern='report_\(' is not a regex"):
        list_eligible(sftp, VisitsSettings(), "report_(", now=1000)
