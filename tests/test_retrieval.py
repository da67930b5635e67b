"""Recall's ranking rules after fusion, on plain numbers (no store, no model)."""

from __future__ import annotations

from memos_cli import retrieval


def test_a_memory_that_asks_a_question_ranks_below_its_answer():
    ranked = [("Melanie: What books do you have in your library?", 2.0),
              ("Caroline: Lots of kids' books, classics and stories.", 1.6)]
    scores = [retrieval.answer_score(fused, text) for text, fused in ranked]
    assert retrieval.best_first(scores) == [1, 0]


def test_a_statement_keeps_its_fused_score():
    assert retrieval.answer_score(1.25, "I moved from Sweden four years ago.") == 1.25
    assert retrieval.asks("Is that recent?") and not retrieval.asks("It is recent.")


def test_ties_keep_the_fused_order():
    assert retrieval.best_first([0.5, 1.0, 0.5, 1.0]) == [1, 3, 0, 2]


def test_not_settled_until_limit_candidates_are_opened():
    assert not retrieval.settled([3.0, 2.0], 3, -10.0)
    assert not retrieval.settled([], 1, -10.0)


def test_settled_once_no_unopened_candidate_can_beat_the_top():
    # Opened: 3.0, and a question at 2.5 - 1.0 = 1.5. The next candidate may score 2.0:
    # it could displace the question, so the top 2 are not final yet.
    assert not retrieval.settled([3.0, 1.5], 2, 2.0)
    assert retrieval.settled([3.0, 1.5], 2, 1.4)
    assert retrieval.settled([3.0, 1.5], 2, 1.5)  # a tie keeps the opened one first


def test_without_questions_the_first_limit_candidates_settle_at_once():
    fused = [2.0, 1.5, 1.0, 0.5]
    scores = [retrieval.answer_score(f, "a statement") for f in fused[:2]]
    assert retrieval.settled(scores, 2, fused[2])
