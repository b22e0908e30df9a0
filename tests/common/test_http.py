"""Retry-After parsing shared by the Signum and Ender Turing hooks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from etlkit.common.http import retry_after_seconds


def _http_date_in(seconds):
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


# An HTTP date is built when the test runs, not at collection: the suite takes minutes.
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        ("-5", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("Fri, 99 Foo 2026 25:61:00 GMT", None),  # looks like a date, is not one
        (lambda: _http_date_in(90), 90.0),
        (format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True), 0.0),  # already past
    ],
    ids=[
        "seconds",
        "negative",
        "absent",
        "empty",
        "word",
        "nan",
        "inf",
        "bad-date",
        "date-ahead",
        "date-past",
    ],
)
def test_retry_after_as_seconds_or_http_date(header, expected):
    header = header() if callable(header) else header
    seconds = retry_after_seconds(header)
    if expected is None:
        assert seconds is None
    else:
        assert seconds == pytest.approx(expected, abs=2)
