"""Recall's relevance (the floor's measure) discounts a turn by someone the query does
not name: wired through the engine, on a real store (hash embedder, no model)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from memos_cli.engine import NewMemory
from memos_cli.search.retrieval import ANOTHER_SPEAKER_DISCOUNT


def test_recall_scores_a_turn_by_another_speaker_lower_than_the_same_evidence(engine_factory):
    eng = engine_factory()
    when = datetime(2023, 5, 8, 13, 56, tzinfo=timezone.utc)
    eng.remember_many([
        NewMemory("Melanie: I painted a sunrise over the lake last week", kind="episode",
                  occurred_at=when),
        NewMemory("Caroline: I went to a support group for adoption", kind="episode",
                  occurred_at=datetime(2023, 6, 1, tzinfo=timezone.utc)),
        NewMemory("Melanie: I painted a sunrise over the lake", kind="note")])
    hits = {h.memory.text: h for h in eng.recall("What did Caroline paint at the lake?",
                                                  limit=3, floor=0.0)}
    turn = hits["Melanie: I painted a sunrise over the lake last week"]
    note = hits["Melanie: I painted a sunrise over the lake"]
    evidence = max(turn.similarity, turn.coverage)
    assert evidence > 0
    assert turn.score == pytest.approx((1 - ANOTHER_SPEAKER_DISCOUNT) * evidence)
    # A note has no speaker: its relevance is its evidence, undiscounted.
    assert note.score == pytest.approx(min(1.0, max(note.similarity, note.coverage)))
