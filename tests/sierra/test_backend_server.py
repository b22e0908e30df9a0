"""The local Signum backend honours the /sync contract the DAG is tested against."""

from __future__ import annotations

import gzip

import pytest
import requests

from tests.sierra.conftest import API_KEY, PRINTER_KEY

pytestmark = pytest.mark.sierra

HEADER = (
    "item_record_id\titem_number\tbarcode\tbib_record_id\tbib_number\tbest_author\tbest_title\t"
    "itype_code_num\titem_type_name\tmaterial_code\tmaterial_name\tclassification\tshelfmark_json\n"
)
TS = "2025-03-14T08:15:30.250000+00:00"


def post(url, key=API_KEY, data: bytes | None = None, timestamp: str | None = TS):
    files = {"file": ("data.tsv.gz", data, "application/gzip")} if data is not None else None
    form = {"timestamp": timestamp} if timestamp is not None else None
    headers = {"x-api-key": key} if key is not None else {}
    return requests.post(f"{url}/sync", headers=headers, files=files, data=form, timeout=5)


def test_auth(backend_server, backend):
    url = backend_server.url
    missing = requests.get(f"{url}/sync", timeout=5)
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["header", "x-api-key"]
    assert requests.get(f"{url}/sync", headers={"x-api-key": PRINTER_KEY}, timeout=5).status_code == 403
    bad_post = post(url, key="nope", data=None, timestamp=None)  # key checked before the form
    assert bad_post.status_code == 403 and bad_post.json() == {"detail": "Invalid x-api-key"}
    assert post(url, data=None).status_code == 422


def test_upload_parsing_and_state_machine(backend_server, backend):
    url = backend_server.url
    assert post(url, data=b"not gzip").status_code == 400
    assert post(url, data=gzip.compress(HEADER.encode())[:-6]).status_code == 500  # truncated stream
    row = '450971566081\t1\tBC1\t\t\t\t"a\tb"\t\t\t\t\t\t\n'
    assert post(url, data=gzip.compress((HEADER + row).encode())).status_code == 500  # empty uint8 itype
    good = row.replace('"a\tb"\t\t', '"a\tb"\t3\t')
    assert post(url, data=gzip.compress((HEADER + good + good).encode())).status_code == 500  # repeated id
    assert backend.items == {} and backend.sync_mode == "SYNC_FULL"

    answer = post(url, data=gzip.compress((HEADER + good).encode()))
    assert answer.json() == {"upserted": 1}
    assert (
        backend.items[450971566081]["best_title"] == "a\tb"
        and backend.items[450971566081]["itype_code_num"] == 3
    )
    assert backend.sync_mode == "SYNC_CHANGES"  # 1 row < batch size 10
    state = requests.get(f"{url}/sync", headers={"x-api-key": API_KEY}, timeout=5).json()
    assert state == {"sync_mode": "SYNC_CHANGES", "timestamp": TS}
