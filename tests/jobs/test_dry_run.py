"""`python -m etlkit.jobs run FILE --data-root DIR --dry-run`: a job on your own file, without Airflow,
writing nothing but --out; without --dry-run it loads through --conn like the Airflow tasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date

import pytest

from dev import jobs_data
from etlkit.jobs.__main__ import main
from tests.conftest import REPO_ROOT
from tests.jobs.conftest import query

pytestmark = pytest.mark.jobs

EXAMPLE = REPO_ROOT / "dags" / "jobs" / "orders_daily_load.json"
DAY = date(2025, 3, 2)
REJECTS = [
    "order_id,customer_id,status,quantity,unit_price,order_date,_reject_reason",
    "1005,C04,shipped,1,,2025-03-02,unparseable_value",
    "1004,C01,new,0,12.00,2025-03-02,non_positive_quantity",
]


def files_under(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_dry_run_command_on_your_own_file_writes_only_under_out(tmp_path):
    data_root, out = tmp_path / "data", tmp_path / "out"
    jobs_data.write_orders_export(data_root, DAY)
    inputs = files_under(data_root)
    command = [sys.executable, "-m", "etlkit.jobs", "run", str(EXAMPLE), "--data-root", str(data_root)]
    command += ["--date", "2025-03-02", "--dry-run", "--out", str(out)]

    done = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "plugins")},
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].split() == ["read_orders", "read_csv", "6", "6", "0", "0"]
    assert "conversion_failures: unit_price 1" in done.stdout
    assert "reject reasons: non_positive_quantity 1, unparseable_value 1" in done.stdout
    would_load = out / "would_load" / "load_orders.csv"
    assert f"dry run: load_orders would upsert 3 rows into sales.orders; they are in {would_load}" in lines
    assert would_load.read_text().splitlines() == [
        "order_id,customer_id,status,quantity,unit_price,order_date",
        "1001,C01,shipped,2,19.90,2025-03-01",
        "1003,C03,new,3,7.50,2025-03-02",
        "1006,C05,new,5,3.20,2025-03-03",
    ]
    assert (out / "rejects" / "orders_20250302_rejected.csv").read_text().splitlines() == REJECTS
    assert files_under(data_root) == inputs, "nothing written beside the input"
    assert files_under(out) == ["rejects/orders_20250302_rejected.csv", "would_load/load_orders.csv"]


def test_run_without_dry_run_loads_through_conn_once_per_date(tmp_path, jobs_dsn, capsys):
    """The spec §9 outcome, from the command line; the same date run again leaves the table unchanged."""
    data_root = tmp_path / "data"
    jobs_data.write_orders_export(data_root, DAY)
    query(jobs_dsn, "INSERT INTO sales.orders (order_id, status) VALUES (1001, 'new') RETURNING 1")
    args = ["run", str(EXAMPLE), "--data-root", str(data_root), "--date", "2025-03-02"]
    args += ["--conn", f"warehouse={jobs_dsn}"]

    for _ in range(2):
        assert main(args) == 0, capsys.readouterr().err
        assert query(jobs_dsn, "SELECT order_id, status FROM sales.orders ORDER BY 1") == [
            (1001, "shipped"),
            (1003, "new"),
            (1006, "new"),
        ]
    assert (data_root / "rejects" / "orders_20250302_rejected.csv").read_text().splitlines() == REJECTS
    assert "dry run" not in capsys.readouterr().out


def test_run_names_what_is_wrong(tmp_path, capsys):
    data_root = tmp_path / "data"
    data_root.mkdir()
    dry = ["--data-root", str(data_root), "--date", "2025-03-02", "--dry-run", "--out", str(tmp_path / "o")]

    assert main(["run", str(EXAMPLE), *dry]) == 1
    assert "exports/orders_20250302.csv" in capsys.readouterr().err, "the missing input is named"

    broken = tmp_path / "orders_daily_load.json"
    job = json.loads(EXAMPLE.read_text())
    job["components"][4]["config"]["password"] = "hunter2"
    broken.write_text(json.dumps(job))
    assert main(["run", str(broken), *dry]) == 1
    assert "$.components[4].config.password (component 'load_orders'): unknown key" in capsys.readouterr().err

    jobs_data.write_orders_export(data_root, DAY)
    without_conn = ["run", str(EXAMPLE), "--data-root", str(data_root), "--date", "2025-03-02"]
    assert main(without_conn) == 1
    assert "pass --conn warehouse=<libpq DSN or URI>" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*without_conn, "--conn", "warehouse"])
