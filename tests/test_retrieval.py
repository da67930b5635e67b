"""Recall's ranking rules after fusion, on plain numbers (no store, no model)."""

from __future__ import annotations

import pytest

from memos_cli.core.config import RECALL_FLOOR
from memos_cli.search import retrieval
from memos_cli.core.memory import Memory


def test_a_memory_that_asks_a_question_ranks_below_its_answer():
    ranked = [("Melanie: What books do you have in your library?", 2.0),
              ("Caroline: Lots of kids' books, classics and stories.", 1.6)]
    asked = retrieval.Asked.of("what books does Caroline have")
    scores = [retrieval.answer_score(fused, text, asked, True) for text, fused in ranked]
    assert retrieval.best_first(scores) == [1, 0]


def test_a_statement_keeps_its_fused_score():
    asked = retrieval.Asked.of("Where did Caroline move from?")
    assert retrieval.answer_score(1.25, "I moved from Sweden four years ago.", asked, True) == 1.25
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
    asked = retrieval.Asked.of("what did Caroline say")
    scores = [retrieval.answer_score(f, "a statement", asked, False) for f in fused[:2]]
    assert retrieval.settled(scores, 2, fused[2])


def test_a_turn_by_someone_the_query_does_not_name_ranks_lower():
    asked = retrieval.Asked.of("What did Caroline research after moving?")
    hers = retrieval.answer_score(1.0, "Caroline: I researched adoption agencies.", asked, True)
    his = retrieval.answer_score(1.4, "Melanie: I researched pottery classes.", asked, True)
    assert retrieval.best_first([his, hers]) == [1, 0]
    assert retrieval.said_by_another("Melanie Jones: hi there", asked)
    assert not retrieval.said_by_another("Caroline: hi there", asked)


def test_the_author_rule_needs_a_name_in_the_query_and_a_speaker_in_the_memory():
    nameless = retrieval.Asked.of("what did we say about the trip")
    assert not nameless.names_someone
    assert not retrieval.said_by_another("Melanie: the trip was great", nameless)
    named = retrieval.Asked.of("what did caroline say about Lisbon")
    assert named.names_someone  # "Lisbon": any capitalised word after the first
    assert not retrieval.said_by_another("Note: the trip was great", retrieval.Asked.of("Note to self"))
    assert not retrieval.said_by_another("the trip to Lisbon was great", named)  # no speaker
    assert not retrieval.said_by_another("Caroline: Lisbon was lovely", named)  # matched case-free


def test_the_author_rule_is_for_conversation_turns_not_notes():
    asked = retrieval.Asked.of("what should I tell Ana")
    note = "Reminder: call Ana about the boiler"
    assert retrieval.answer_score(1.0, note, asked, turn=False) == 1.0
    assert retrieval.answer_score(1.0, note, asked, turn=True) == 1.0 - retrieval.AUTHOR_PENALTY


def _turn(text: str) -> Memory:
    return Memory(id="m1", text=text, kind="episode", occurred_at="2023-05-08T13:56:00+00:00")


def test_a_word_only_a_neighbour_says_is_weaker_evidence_than_ones_own():
    # The query's words are all in the next turn (window 0.5), few in this one (own 0.2).
    turn = _turn("Caroline: that sounds lovely")
    assert retrieval.keyword_evidence(turn, 0.4, 0.2, 0.5) == pytest.approx(0.4)  # 0.8 x 0.5
    assert retrieval.keyword_evidence(turn, 0.4, 0.45, 0.5) == pytest.approx(0.45)  # own wins


def test_a_turn_by_someone_the_query_does_not_name_is_less_relevant():
    assert retrieval.relevance(0.5, 0.2, by_another=True) == pytest.approx(0.35)
    assert retrieval.relevance(0.5, 0.2) == pytest.approx(0.5)
    # Clears the default floor by its own speaker, not by another.
    assert retrieval.relevance(0.4, 0.0) >= RECALL_FLOOR > retrieval.relevance(0.4, 0.0, by_another=True)
