"""WHEN values: ISO dates and relative words."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from memos_cli.core.errors import UsageError
from memos_cli.core.timeparse import from_iso, parse_when, to_iso

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


@pytest.mark.parametrize("query,start,end", [
    ("what did I do yesterday", datetime(2026, 11, 23, tzinfo=timezone.utc),
     datetime(2026, 11, 24, tzinfo=timezone.utc)),
    ("who did I meet last week", datetime(2026, 11, 16, tzinfo=timezone.utc),
     datetime(2026, 11, 23, tzinfo=timezone.utc)),
    ("plans made in March", datetime(2026, 3, 1, tzinfo=timezone.utc),
     datetime(2026, 4, 1, tzinfo=timezone.utc)),
    ("trip in December", datetime(2025, 12, 1, tzinfo=timezone.utc),
     datetime(2026, 1, 1, tzinfo=timezone.utc)),
    ("what happened in 2024", datetime(2024, 1, 1, tzinfo=timezone.utc),
     datetime(2025, 1, 1, tzinfo=timezone.utc)),
    ("last month's bills", datetime(2026, 10, 1, tzinfo=timezone.utc),
     datetime(2026, 11, 1, tzinfo=timezone.utc)),
])
def test_query_period(query, start, end):
    from memos_cli.core.timeparse import query_period

    assert query_period(query, NOW) == (start, end)


def test_query_without_time_words_has_no_period():
    from memos_cli.core.timeparse import query_period

    assert query_period("where does my sister live", NOW) is None
    assert query_period("3 days ago I ran", NOW) == (NOW - timedelta(days=3.5),
                                                     NOW - timedelta(days=2.5))
