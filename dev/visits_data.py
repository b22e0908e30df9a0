"""Generator of visit report files in the real format (CRLF, quoted lists, varying column 2).

Used by the tests, ``make demo`` and the benchmark: ``python -m dev.visits_data OUT_DIR``.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

HEADER_AFTER_COLUMN2 = (
    "Badmail,Baja,Fecha envio,Fecha open,Opens,Opens virales,Fecha click,Clicks,Clicks virales,"
    "Links,IPs,Navegadores,Plataformas"
)
BROWSERS = ("Chrome Generic", "Firefox 125.0", "Safari 17.0", "Opera 12.00", "IE 8.0", "Edge 120")
PLATFORMS = ("Win10", "MacOSX", "Android", "iOS", "Linux", "unknown")
DOMAINS = ("example.com", "example.org", "example.net", "correo.example.mx", "mail.example.es")
INVALID_ROWS = (
    "not-an-email,,,,03/05/2024 09:15,-,0,0,-,0,0,-,-,-,-",
    "bad@example.com,,,,31/02/2024 10:00,-,0,0,-,0,0,-,-,-,-",
    "bad@example.com,,,,03/05/2024 09:15,-,1.5,0,-,0,0,-,-,-,-",
    "bad@example.com,,XYZ,,03/05/2024 09:15,-,0,0,-,0,0,-,-,-,-",
    'bad@example.com,,,,03/05/2024 09:15,-,0,0,-,0,0,"5,5,-,-,-',
    "bad@example.com,,,,03/05/2024 09:15,-,0,0,-,0,0,-,-,-",
)


def header(column2: str = "jk") -> str:
    return f"email,{column2},{HEADER_AFTER_COLUMN2}"


def _stamp(moment: datetime) -> str:
    return moment.strftime("%d/%m/%Y %H:%M")


def _multi(rng: random.Random, values: tuple[str, ...] | None, make=None) -> str:
    count = rng.choice((0, 1, 1, 2, 3))
    if count == 0:
        return "-"
    items = [make() if make else rng.choice(values) for _ in range(count)]
    text = ",".join(items) + ("," if rng.random() < 0.1 else "")
    return f'"{text}"' if "," in text else text


def valid_row(rng: random.Random, sent: datetime, emails: int, email_prefix: str = "user") -> str:
    email = f"{email_prefix}{rng.randrange(emails)}@{rng.choice(DOMAINS)}"
    badmail = "HARD" if rng.random() < 0.03 else rng.choice(("", "-"))
    baja = "SI" if rng.random() < 0.02 else rng.choice(("", "-"))
    opened = rng.random() < 0.45 and not badmail
    if not opened:
        return f"{email},,{badmail},{baja},{_stamp(sent)},{rng.choice(('-', ''))},0,0,-,0,0,-,-,-,-"
    open_at = sent + timedelta(minutes=rng.randrange(1, 60 * 24 * 20))
    clicked = rng.random() < 0.4
    click = _stamp(open_at + timedelta(minutes=rng.randrange(1, 120))) if clicked else "-"
    clicks = rng.randrange(1, 5) if clicked else 0
    links = _multi(rng, None, lambda: str(rng.randrange(1, 30))) if clicked else "-"
    ips = _multi(rng, None, lambda: f"198.51.100.{rng.randrange(1, 255)}")
    return ",".join(
        [
            email,
            "",
            badmail,
            baja,
            _stamp(sent),
            _stamp(open_at),
            str(rng.randrange(1, 6)),
            str(rng.randrange(0, 2)),
            click,
            str(clicks),
            str(rng.randrange(0, 2)),
            links,
            ips,
            _multi(rng, BROWSERS),
            _multi(rng, PLATFORMS),
        ]
    )


def report_lines(
    rows: int,
    *,
    seed: int = 7,
    invalid_every: int = 50,
    emails: int = 5000,
    column2: str = "jk",
    email_prefix: str = "user",
) -> Iterator[str]:
    """The header and ``rows`` records; every ``invalid_every``-th record breaks one rule."""
    rng = random.Random(seed)
    sent = datetime(2024, 5, 3, 9, 15) + timedelta(days=seed % 30)
    yield header(column2)
    for number in range(1, rows + 1):
        if invalid_every and number % invalid_every == 0:
            yield INVALID_ROWS[(number // invalid_every) % len(INVALID_ROWS)]
        else:
            yield valid_row(rng, sent, emails, email_prefix)


def write_report(path: Path, rows: int, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="ascii", newline="") as out:
        for line in report_lines(rows, **options):
            out.write(line + "\r\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--files", type=int, default=3)
    parser.add_argument("--rows", type=int, default=500)
    args = parser.parse_args()
    for index in range(args.files):
        write_report(
            args.out_dir / f"report_{100 + index}.txt",
            args.rows,
            seed=index,
            column2=("jk", "jyv", "fgh")[index % 3],
        )


if __name__ == "__main__":
    main()
