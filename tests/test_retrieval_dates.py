"""A query that names a day with its year ("on October 13, 2023") puts what happened
that day first (issue 14: dates for temporal questions)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from memos_cli.engine import NewMemory
from memos_cli.core.timeparse import query_period

DAY = (datetime(2023, 10, 13, tzinfo=timezone.utc), datetime(2023, 10, 14, tzinfo=timezone.utc))


@pytest.mark.parametrize("query", [
    "What painting did Melanie show on October 13, 2023?",
    "what did I paint on 13 October 2023",
    "what did I paint on the 13th October, 2023",
    "what did I paint on october 13th 2023",
    "what did I paint on 2023-10-13",
])
def test_a_query_naming_a_day_names_that_day(query):
    assert query_period(query) == DAY


def test_a_day_that_does_not_exist_names_no_day():
    assert query_period("what did I do on February 30, 2023") is None


def test_recall_puts_what_happened_on_the_named_day_first(engine_factory):
    eng = engine_factory()
    eng.remember_many([
        NewMemory("I painted a sunrise over the lake with the kids", kind="event",
                  occurred_at=datetime(2023, 8, 2, 15, tzinfo=timezone.utc)),
        NewMemory("Finished a small painting of my cat", kind="event",
                  occurred_at=datetime(2023, 10, 13, 18, tzinfo=timezone.utc))])
    hits = eng.recall("what did I paint with the kids on October 13, 2023", limit=2, floor=0.0)
    assert [h.memory.text for h in hits] == ["Finished a small painting of my cat",
                                             "I painted a sunrise over the lake with the kids"]
