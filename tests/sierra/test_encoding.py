"""The gzip TSV file byte by byte, and its round trip through the backend's pandas parser."""

from __future__ import annotations

import csv
import gzip
import io
import json

import pytest

from dev.sierra_data import add_bib, add_item, bib_id, item_id
from dev.signum_server import BackendState
from etlkit.sierra.extract import Selection
from etlkit.sierra.protocol import COLUMNS, SYNC_FULL, TSV_HEADER
from tests.sierra.fixtures import AWKWARD_TITLE, build_catalogue, expected_rows, stored_rows

pytestmark = pytest.mark.sierra


@pytest.fixture
def extract(sierra, sync_env, tmp_path):
    """Extract every item (one full batch) straight through the hook; returns the raw TSV bytes."""
    from etlkit.hooks.sierra import SierraHook

    def run(itype_null_fallback=0) -> bytes:
        path = tmp_path / "data.tsv.gz"
        with SierraHook("sierra_dna").snapshot(60) as snap:
            rows = snap.copy_rows(Selection(SYNC_FULL, 0, 10_000), path, itype_null_fallback)
        data = gzip.decompress(path.read_bytes())
        assert rows == len(read_records(data)) - 1  # COPY's row count, header excluded
        return data

    return run


def read_records(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), delimiter="\t"))


def test_file_layout_quoting_and_plain_integers(sierra, extract):
    build_catalogue(sierra)
    add_bib(sierra, 200, title="only\rCR", author="")
    add_item(sierra, 30, bibs=[bib_id(200)], itype=None)
    data = extract(itype_null_fallback=None)

    assert not data.startswith(b"\xef\xbb\xbf") and data.startswith(TSV_HEADER)
    assert data.endswith(b"\n") and b"\r\n" not in data.replace(b"Windows\r\n", b"")
    records = read_records(data)
    assert records[0] == list(COLUMNS) and all(len(r) == 13 for r in records)
    by_id = {int(r[0]): dict(zip(COLUMNS, r, strict=True)) for r in records[1:]}
    assert len(by_id) == 26
    # A bare CR is quoted (Python 3.11's csv writer would not); tabs, quotes, LF too.
    assert b'\t"only\rCR"\t' in data
    assert ('\t"' + AWKWARD_TITLE.replace('"', '""') + '"\t').encode() in data
    assert by_id[item_id(4)]["best_title"] == AWKWARD_TITLE
    # NULL and '' are both an empty, unquoted field; integers are bare digits.
    line_30 = next(line for line in data.split(b"\n") if line.startswith(str(item_id(30)).encode()))
    expected = f'{item_id(30)}\t30\tBC000000030\t{bib_id(200)}\t200\t\t"only\rCR"\t\t\ta\tKirja\t\t'
    assert line_30 == expected.encode()  # '' author, NULL itype/name/classification/shelfmark: empty
    assert by_id[item_id(7)]["bib_record_id"] == "" and by_id[item_id(7)]["shelfmark_json"] == ""


def test_shelfmark_json_classification_and_determinism(sierra, extract):
    build_catalogue(sierra)
    first, second = extract(), extract()
    assert first == second  # byte-identical across runs
    records = {int(r[0]): r for r in read_records(first)[1:]}
    item_on_bib_100 = records[item_id(4)]
    assert item_on_bib_100[COLUMNS.index("classification")] == "TOL"  # max over every 097 subfield
    shelfmark = item_on_bib_100[COLUMNS.index("shelfmark_json")]
    parsed = json.loads(shelfmark)
    assert [list(o) for o in parsed] == [
        ["marc_tag", "marc_ind1", "marc_ind2", "field_type_code", "tag", "content"]
    ] * 3
    assert [(o["marc_tag"], o["tag"]) for o in parsed] == [("100", "a"), ("245", "a"), ("245", "c")]
    assert parsed[0]["marc_ind2"] == " " and parsed[2]["content"] == "Лев Толстой"
    assert shelfmark == json.dumps(parsed, ensure_ascii=False, separators=(",", ":"))
    assert records[item_id(1)][COLUMNS.index("shelfmark_json")] == ""  # bib 101 has no 1XX/245
    bib_102 = json.loads(records[item_id(2)][COLUMNS.index("shelfmark_json")])
    assert [o["marc_tag"] for o in bib_102] == ["110"]  # the non-MARC subfield is not a 1XX


def test_round_trip_through_the_backend_parser(sierra, extract):
    build_catalogue(sierra)
    data = extract(itype_null_fallback=0)
    backend = BackendState(batch_size=10_000)
    from datetime import UTC, datetime

    assert backend.apply_upload(data.decode("utf-8"), datetime.now(UTC)) == 25
    assert stored_rows(backend.items) == expected_rows(sierra, fallback=0)
    assert backend.items[item_id(4)]["best_title"] == AWKWARD_TITLE
    assert backend.items[item_id(4)]["best_author"] == "Толстой, Лев"


def test_null_itype_without_fallback_is_an_empty_field_the_backend_refuses(
    sierra, extract, run_task, backend
):
    build_catalogue(sierra, items=10)
    data = extract(itype_null_fallback=None)
    line_9 = next(line for line in data.split(b"\n") if line.startswith(str(item_id(9)).encode()))
    assert line_9.split(b"\t")[7] == b""
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="HTTP 500"):
        run_task()
    assert backend.items == {}

    summary = run_task(itype_null_fallback=0)
    assert summary["itype_fallbacks"] == 1 and ("sierra_sync.itype_fallbacks", 1) in run_task.metrics
    assert backend.items[item_id(9)]["itype_code_num"] == 0


def test_repeated_property_rows_give_one_row_with_the_lowest_id(sierra, extract):
    """Several property rows are not expected (spec §3.1), but must not duplicate an item."""
    build_catalogue(sierra, items=6)
    item, bib = item_id(3), bib_id(103)  # item 3 links to bib 103 alone
    sierra.execute(
        "INSERT INTO sierra_view.item_record_property VALUES (%s, %s, 'LOWER ID', NULL), (%s, %s, 'HIGHER ID', NULL)",
        (item - 1, item, item + 1, item),
    )
    sierra.execute(
        "INSERT INTO sierra_view.bib_record_property VALUES"
        " (%s, %s, 'Lower id title', 'A', 'g', 'm', 2001), (%s, %s, 'Higher id title', 'B', 's', 'm', 2001)",
        (bib - 1, bib, bib + 1, bib),
    )
    records = read_records(extract())[1:]
    assert [int(r[0]) for r in records] == [item_id(n) for n in range(1, 7)]
    by_id = {int(r[0]): dict(zip(COLUMNS, r, strict=True)) for r in records}
    assert by_id[item]["barcode"] == "LOWER ID"
    assert (by_id[item]["best_title"], by_id[item]["material_name"]) == ("Lower id title", "Video")
    assert by_id[item_id(5)]["best_title"] == "Lower id title"  # item 5's greatest bib is 103 too


def test_itype_fallbacks_warn_with_the_count_and_the_first_20_item_ids(sierra, run_task, backend, caplog):
    build_catalogue(sierra, items=30)
    nulls = [item_id(n) for n in range(1, 24)]
    sierra.execute(
        "UPDATE sierra_view.item_record SET itype_code_num = NULL WHERE record_id = ANY(%s)", [nulls]
    )
    backend.batch_size = 50  # one batch, one warning

    summary = run_task(itype_null_fallback=7)

    assert summary["itype_fallbacks"] == 23
    assert f"23 items have a NULL itype, written as 7; first ids: {nulls[:20]}" in caplog.text
    assert ("sierra_sync.itype_fallbacks", 23) in run_task.metrics
    assert {backend.items[i]["itype_code_num"] for i in nulls} == {7}
    assert len(backend.items) == 30  # substituted, never dropped
