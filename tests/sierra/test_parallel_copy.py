"""A batch copied in parts over connections sharing one snapshot: the same bytes as one COPY."""

from __future__ import annotations

import gzip
import logging
import threading
from datetime import timedelta

import psycopg
import pytest

from dev import pgdb
from dev.sierra_data import READER_ROLE, generate, item_id, touch
from etlkit.common.errors import ConfigurationError
from etlkit.sierra.extract import BIGINT_MIN, IdRange, Selection, id_ranges, open_snapshot, part_count
from etlkit.sierra.protocol import SYNC_CHANGES, SYNC_FULL
from tests.sierra.conftest import sierra_sessions

pytestmark = pytest.mark.sierra


@pytest.fixture
def copy_in_parts(sierra_dbname, tmp_path):
    """Copy one selection with ``parts`` connections; returns (rows, decompressed bytes)."""

    def connect(**options):
        return psycopg.connect(pgdb.dsn(sierra_dbname), **options)

    def run(selection: Selection, parts: int, **options) -> tuple[int, bytes]:
        path = tmp_path / f"parts-{parts}.tsv.gz"
        with open_snapshot(connect(**options), 60, connect=lambda: connect(**options)) as snap:
            rows = snap.copy_rows(selection, path, itype_null_fallback=None, parts=parts)
        return rows, gzip.decompress(path.read_bytes())

    return run


def test_part_count_and_ranges():
    assert part_count(100_000, parallelism=2, min_items_per_part=20_000) == 2
    assert part_count(39_999, parallelism=2, min_items_per_part=20_000) == 1
    assert part_count(0, parallelism=4, min_items_per_part=1) == 1
    assert part_count(10, parallelism=1, min_items_per_part=1) == 1
    # Duplicate cuts (few items, many parts) and a cut at the last id collapse.
    assert id_ranges([5, 5, 9, 12], last_id=12) == [IdRange(BIGINT_MIN, 5), IdRange(5, 9), IdRange(9, 12)]
    assert id_ranges([], last_id=7) == [IdRange(BIGINT_MIN, 7)]


@pytest.mark.parametrize("parts", [2, 3, 8])
def test_full_batch_in_parts_is_byte_identical(sierra, copy_in_parts, parts, caplog):
    generate(sierra, 3_000)
    rows, one = copy_in_parts(Selection(SYNC_FULL, 0, 100_000), parts=1)
    assert rows == 3_000 and one.count(b"\n") > rows + 1  # quoted newlines inside some titles
    with caplog.at_level(logging.INFO, logger="etlkit.sierra.extract"):
        assert copy_in_parts(Selection(SYNC_FULL, 0, 100_000), parts=parts) == (rows, one)
    assert f"copying {parts} parts side by side" in caplog.text


def test_a_page_in_the_middle_keeps_its_limit(sierra, copy_in_parts):
    """The last part ends at the page's last id: items after the page never leak into it."""
    generate(sierra, 2_000)
    selection = Selection(SYNC_FULL, last_synced_id=item_id(500), batch_size=700)
    rows, one = copy_in_parts(selection, parts=1)
    assert rows == 700 and one.split(b"\n")[1].startswith(str(item_id(501)).encode())
    assert one.split(b"\n")[-2].startswith(str(item_id(1200)).encode())
    assert copy_in_parts(selection, parts=4) == (rows, one)


def test_changes_in_parts_is_byte_identical(sierra, copy_in_parts):
    generate(sierra, 2_000)
    now = sierra.execute("SELECT now()").fetchone()[0]
    since = now + timedelta(days=1)
    for n in range(1, 2_000, 37):
        touch(sierra, item_id(n), since)
    rows, one = copy_in_parts(Selection(SYNC_CHANGES, since=since), parts=1)
    assert rows == len(range(1, 2_000, 37))
    assert copy_in_parts(Selection(SYNC_CHANGES, since=since), parts=3) == (rows, one)


def test_a_failing_part_fails_the_copy_and_leaves_nothing_running(sierra, sierra_dbname, copy_in_parts):
    """Every part waits on a lock it cannot get: the error surfaces, no thread or session is left."""
    generate(sierra, 1_000)
    with psycopg.connect(pgdb.dsn(sierra_dbname)) as locker:
        locker.execute("LOCK TABLE sierra_view.subfield IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            copy_in_parts(Selection(SYNC_FULL, 0, 1_000), parts=2, options="-c lock_timeout=200ms")
    assert not [t for t in threading.enumerate() if t.name == "sierra-copy-part"]
    assert sierra_sessions(sierra, dbname=sierra_dbname) == 0


def test_a_server_refusing_to_share_its_snapshot_is_a_clear_configuration_error(sierra, copy_in_parts):
    generate(sierra, 1_000)
    sierra.execute("REVOKE EXECUTE ON FUNCTION pg_export_snapshot() FROM PUBLIC")
    try:
        with pytest.raises(ConfigurationError, match="set extract_parallelism to 1"):
            copy_in_parts(Selection(SYNC_FULL, 0, 1_000), parts=3, user=READER_ROLE)
        rows, _ = copy_in_parts(Selection(SYNC_FULL, 0, 1_000), parts=1, user=READER_ROLE)
        assert rows == 1_000
    finally:
        sierra.execute("GRANT EXECUTE ON FUNCTION pg_export_snapshot() TO PUBLIC")
