"""WHEN values: ISO dates and relative words."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from memos_cli.errors import UsageError
from memos_cli.timeparse import from_iso, parse_when, to_iso

NOW = datetime(2026, 11, 24, 15, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize("text,expected", [
    ("2026-03-01", datetime(2026, 3, 1, tzinfo=timezone.utc)),
    ("2026-03-01T10:00:00+02:00", datetime(2026, 3, 1, 8, tzinfo=timezone.utc)),
    ("now", NOW),
    ("today", datetime(2026, 11, 24, tzinfo=timezone.utc)),
    ("yesterday", datetime(2026, 11, 23, tzinfo=timezone.utc)),
    ("3 days ago", NOW - timedelta(days=3)),
    ("an hour ago", NOW - timedelta(hours=1)),
    ("2 weeks ago", NOW - timedelta(weeks=2)),
    ("1 year ago", NOW - timedelta(days=365)),
])
def test_parse_when(text, expected):
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["next tuesday-ish", "", "3 fortnights ago", "2026-13-01"])
def test_unreadable_times_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse_when(text, NOW)


def test_iso_round_trip():
    assert to_iso(NOW) == "2026-11-24T15:30:00Z"
    assert from_iso(to_iso(NOW)) == NOW
