"""Reading and writing points in time: ISO dates and "3 days ago" style words.

Every timestamp memos stores is an aware UTC ``datetime`` written as ISO 8601.
``parse_when`` is what every ``--at/--since/--until/--before`` flag goes through.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

from memos_cli.errors import UsageError

_UNITS = {
    "second": timedelta(seconds=1),
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
    # Months and years are calendar-ish; a fixed length is what a user means
    # by "2 months ago" closely enough for filtering memories.
    "month": timedelta(days=30),
    "year": timedelta(days=365),
}
_AGO_RE = re.compile(
    r"^(?P<n>\d+|an?|one)\s*(?P<unit>second|sec|minute|min|hour|hr|day|week|wk|month|mo|year|yr)s?\s+ago$"
)
_ABBREV = {"sec": "second", "min": "minute", "hr": "hour", "wk": "week", "mo": "month", "yr": "year"}


def now_utc() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def to_iso(moment: datetime) -> str:
    """Canonical text form: UTC, seconds precision, trailing Z."""
    return moment.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_iso(text: str) -> datetime:
    """Inverse of :func:`to_iso`, tolerant of any ISO 8601 form."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """Parse a user's WHEN: ISO date or datetime, now/today/yesterday, "N units ago".

    A bare date means the start of that day in UTC. Raises ``UsageError``.
    """
    now = now or now_utc()
    raw = text.strip().lower()
    if raw == "now":
        return now
    if raw in ("today", "yesterday"):
        day = now.date() - timedelta(days=1 if raw == "yesterday" else 0)
        return _start_of(day)
    match = _AGO_RE.match(raw)
    if match:
        count = 1 if match["n"] in ("a", "an", "one") else int(match["n"])
        unit = _ABBREV.get(match["unit"], match["unit"])
        return now - count * _UNITS[unit]
    try:
        if len(raw) == 10:
            return _start_of(date.fromisoformat(raw))
        return from_iso(text.strip())
    except ValueError:
        raise UsageError(
            f"cannot read the time {text!r}: use an ISO date (2026-03-01), "
            "'yesterday', or '3 days ago'"
        ) from None


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)
