"""Input data and target tables of the example declarative jobs, plus the benchmark's large CSV.

``python -m dev.jobs_data DATA_ROOT [YYYY-MM-DD] [--dsn DSN]`` writes the example inputs under
DATA_ROOT (the environment's ``data_root``) and, with ``--dsn``, creates the target tables.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import date
from pathlib import Path

import psycopg

REPO_ROOT = Path(__file__).resolve().parents[1]

ORDERS_HEADER = "order_id,customer_id,status,quantity,unit_price,order_date"
ORDERS_ROWS = [
    "1001,C01,shipped,2,19.90,2025-03-01",
    "1002,C02,cancelled,1,5.00,2025-03-01",
    "1003,C03,new,3,7.50,2025-03-02",
    "1004,C01,new,0,12.00,2025-03-02",
    "1005,C04,shipped,1,abc,2025-03-02",
    "1006,C05,new,5,3.20,2025-03-03",
]
CUSTOMERS = [
    {"id": "C01", "name": "Ann", "address": {"region": "north", "city": "Tromso"}},
    {"id": "C02", "name": "Bob", "address": {"region": "south"}},
    {"id": "C03", "name": "Cid", "address": {"region": "north"}},
    {"id": "C04", "name": "Dee", "address": {}},
]
WEB_EVENTS = {
    "a": [
        "event_id;user_id;event;occurred_at;amount",
        "1;u1;purchase;2025-03-02T10:00:00;19.99",
        "2;u2;page_view;2025-03-02T10:01:00;",
        "3;u1;refund;2025-03-02T11:00:00+00:00;-5.00",
        "4;u3;purchase;not-a-time;3.50",
    ],
    "b": [
        "event_id;user_id;event;occurred_at;amount",
        "5;u4;purchase;2025-03-02T12:00:00;abc",
        "6;u5;purchase;2025-03-02T12:30:00;7.25;extra",
        "x7;u6;purchase;2025-03-02T13:00:00;1.00",
    ],
}
MOBILE_EVENTS = [
    {"event_id": "101", "user": {"id": "u1"}, "name": "app_open", "ts": "2025-03-02T09:00:00Z"},
    {"event_id": "102", "user": {"id": "u2"}, "name": "purchase", "ts": "2025-03-02T09:30:00Z"},
]


def write_orders_export(data_root: Path, day: date) -> Path:
    path = data_root / "exports" / f"orders_{day:%Y%m%d}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([ORDERS_HEADER, *ORDERS_ROWS]) + "\n")
    return path


def write_customers(data_root: Path) -> Path:
    path = data_root / "crm" / "customers.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(CUSTOMERS, indent=1))
    return path


def write_events(data_root: Path, day: date) -> list[Path]:
    folder = data_root / "events"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for part, lines in WEB_EVENTS.items():
        paths.append(folder / f"web_{day:%Y%m%d}_{part}.csv")
        paths[-1].write_text("\n".join(lines) + "\n")
    paths.append(folder / f"mobile_{day:%Y%m%d}.jsonl")
    paths[-1].write_text("".join(json.dumps(e) + "\n" for e in MOBILE_EVENTS))
    return paths


def write_example_inputs(data_root: Path, day: date) -> None:
    write_orders_export(data_root, day)
    write_customers(data_root)
    write_events(data_root, day)


def create_demo_tables(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute((REPO_ROOT / "include" / "sql" / "jobs" / "demo_tables.sql").read_text())


def write_orders_csv(path: Path, rows: int, seed: int = 7) -> Path:
    """A large order export: ~2% cancelled, ~0.5% unparseable prices, ~1% zero quantities."""
    rng = random.Random(seed)
    statuses = ["new", "shipped", "paid", "cancelled"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        handle.write(ORDERS_HEADER + "\n")
        for order_id in range(1, rows + 1):
            status = statuses[3] if rng.random() < 0.02 else statuses[order_id % 3]
            quantity = 0 if rng.random() < 0.01 else rng.randint(1, 20)
            price = "n/a" if rng.random() < 0.005 else f"{rng.randint(100, 99999) / 100:.2f}"
            handle.write(
                f"{order_id},C{order_id % 5000:05d},{status},{quantity},{price},2025-03-{1 + order_id % 28:02d}\n"
            )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_root", type=Path)
    parser.add_argument("day", nargs="?", type=date.fromisoformat, default=date(2025, 3, 2))
    parser.add_argument("--dsn", help="create the example target tables in this database")
    args = parser.parse_args()
    write_example_inputs(args.data_root, args.day)
    if args.dsn:
        create_demo_tables(args.dsn)
    print(f"example inputs for {args.day} written under {args.data_root}")


if __name__ == "__main__":
    main()
