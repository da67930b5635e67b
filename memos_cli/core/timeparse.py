"""Reading and writing points in time: ISO dates and "3 days ago" style words.

Every timestamp memos stores is an aware UTC ``datetime`` written as ISO 8601.
``parse_when`` is what every ``--at/--since/--until/--before`` flag goes through.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

from memos_cli.core.errors import UsageError

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


_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
_IN_MONTH = re.compile(r"\b(?:in|during|since)\s+(" + "|".join(_MONTHS) + r")(?:\s+(\d{4}))?\b")
_IN_YEAR = re.compile(r"\b(?:in|during)\s+(\d{4})\b")
_N_AGO = re.compile(r"\b(\d+|a|an|one)\s+(day|week|month|year)s?\s+ago\b")
_MONTH = "(?P<name>" + "|".join(_MONTHS) + ")"
# A day named with its year: "October 13, 2023", "13 October 2023", "2023-10-13".
_DAYS = (re.compile(r"\b" + _MONTH + r"\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<y>\d{4})\b"),
         re.compile(r"\b(?P<d>\d{1,2})(?:st|nd|rd|th)?\s+" + _MONTH + r",?\s+(?P<y>\d{4})\b"),
         re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})\b"))


def query_period(query: str, now: datetime | None = None) -> tuple[datetime, datetime] | None:
    """The time span a question names ("yesterday", "last week", "on October 13, 2023",
    "in March"), or None.

    Recall uses it to put what happened in that span first. Spans are [start, end).
    """
    now = now or now_utc()
    text = query.lower()
    today = _start_of(now.date())
    named = {
        "yesterday": (today - timedelta(days=1), today),
        "today": (today, today + timedelta(days=1)),
        "this week": (today - timedelta(days=today.weekday()), today + timedelta(days=1)),
        "last week": (today - timedelta(days=today.weekday() + 7),
                      today - timedelta(days=today.weekday())),
        "this month": (today.replace(day=1), today + timedelta(days=1)),
        "last month": (_month_start(today.replace(day=1) - timedelta(days=1)), today.replace(day=1)),
        "this year": (today.replace(month=1, day=1), today + timedelta(days=1)),
        "last year": (today.replace(year=today.year - 1, month=1, day=1),
                      today.replace(month=1, day=1)),
    }
    for words, span in named.items():
        if re.search(rf"\b{words}\b", text):
            return span
    match = _N_AGO.search(text)
    if match:
        moment = parse_when(match.group(0), now)
        unit = _UNITS[match[2]]
        return moment - unit / 2, moment + unit / 2
    day = _named_day(text)
    if day is not None:
        return day, day + timedelta(days=1)
    match = _IN_MONTH.search(text)
    if match:
        month = _MONTHS.index(match[1]) + 1
        year = int(match[2]) if match[2] else (now.year if month <= now.month else now.year - 1)
        start = datetime(year, month, 1, tzinfo=timezone.utc)
        return start, _month_start(start + timedelta(days=32))
    match = _IN_YEAR.search(text)
    if match:
        year = int(match[1])
        return (datetime(year, 1, 1, tzinfo=timezone.utc),
                datetime(year + 1, 1, 1, tzinfo=timezone.utc))
    return None


def _named_day(text: str) -> datetime | None:
    """The start of a day the (lower-cased) text names with its year, or None."""
    for pattern in _DAYS:
        match = pattern.search(text)
        if match:
            found = match.groupdict()
            month = _MONTHS.index(found["name"]) + 1 if found.get("name") else int(found["m"])
            try:
                return datetime(int(found["y"]), month, int(found["d"]), tzinfo=timezone.utc)
            except ValueError:  # "February 30, 2023": no such day, so no period
                return None
    return None


def _month_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
