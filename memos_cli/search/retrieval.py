"""Recall's ranking after fusion, as pure functions over candidates: no store, no keys,
no model, so each rule is tested on plain numbers (tests/test_retrieval.py).

The retrievers propose candidates best first by a fused rank score (see
``recall._fuse``). Some evidence is only known once a candidate is opened (its
text): the functions here turn it into an adjusted rank score, and say when enough
candidates have been opened that no unopened one can still make the top.

What was measured, kept and dropped is in docs/benchmarks.md (issue 14).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

import numpy as np

from memos_cli.core.memory import Memory
from memos_cli.core.timeparse import from_iso

# A memory that asks a question ("What books do you have?") shares the words of a
# question about the same thing, but rarely holds its answer: in a conversation the
# answer is the next turn. In z-units of the fused score (docs/benchmarks.md, issue 14).
QUESTION_PENALTY = 1.0
# A conversation turn (an episode, "Melanie: ...") said by someone other than the person
# a query names ("What did Caroline research?") is rarely about that person. Same units.
# Only episodes: a note such as "Reminder: call Ana" has no speaker.
AUTHOR_PENALTY = 1.5

_AUTHOR = re.compile(r"^([A-Z][\w'.-]*(?: [A-Z][\w'.-]*){0,2}):\s")  # "Name:" or "First Last:"
_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


@dataclass(frozen=True)
class Asked:
    """What the ranking needs to know of a query, worked out once per recall."""

    words: frozenset[str]
    names_someone: bool  # a capitalised word after the first: a name, most likely

    @classmethod
    def of(cls, query: str) -> "Asked":
        later = re.findall(r"[A-Za-z][\w']+", query)[1:]
        return cls(_words(query), any(w[0].isupper() for w in later))


def asks(text: str) -> bool:
    """Whether a memory's text asks a question."""
    return "?" in text


def said_by_another(text: str, asked: Asked) -> bool:
    """Whether a conversation turn ("Name: ...") is by someone the query does not name,
    when it names someone. Text without a speaker is never "another's"."""
    author = _AUTHOR.match(text)
    return asked.names_someone and author is not None and not (_words(author[1]) & asked.words)


def answer_score(fused: float, text: str, asked: Asked, turn: bool) -> float:
    """A candidate's rank score once its text is known: lowered if it asks a question,
    and if it is a conversation ``turn`` (an episode) by another person. Only ever
    lowered (``settled`` relies on it)."""
    another = turn and said_by_another(text, asked)
    return (fused - (QUESTION_PENALTY if asks(text) else 0.0)
            - (AUTHOR_PENALTY if another else 0.0))


def settled(scores: Sequence[float], limit: int, next_fused: float) -> bool:
    """Whether the ``limit`` best of the opened candidates' adjusted ``scores`` are final:
    adjusting only lowers a score, so an unopened candidate, whose fused score is at most
    ``next_fused``, cannot beat them (on a tie the one opened first stays first)."""
    if len(scores) < limit:
        return False
    return float(np.sort(np.asarray(scores, dtype=float))[-limit]) >= next_fused


def best_first(scores: Sequence[float]) -> list[int]:
    """Positions of ``scores`` best first; ties keep their order (the fused order)."""
    return [int(i) for i in np.argsort(-np.asarray(scores, dtype=float), kind="stable")]


# --- evidence and fusion over candidates (pure: no store; engine/recall.py calls them) -----

NEIGHBOUR_GATE = 0.1  # least cosine for a memory to borrow its neighbours' words as evidence
# Relevance (the floor's measure) of a memory whose query words are only in its neighbours'
# turns, and of a turn by someone the query does not name: both clear the floor less easily,
# so a question the store holds no answer to more often gets nothing, while own
# evidence still clears it (LoCoMo abstention, docs/benchmarks.md, issue 14).
WINDOW_WEIGHT = 0.8
ANOTHER_SPEAKER_DISCOUNT = 0.3


@dataclass
class Hit:
    memory: Memory
    score: float  # relevance 0..1 on an absolute scale (see ``relevance``), not a rank
    similarity: float = 0.0  # cosine similarity of query and memory, -1..1
    coverage: float = 0.0  # share of the query's word weight it holds (keyword_evidence), 0..1


def relevance(cosine: float, coverage: float, by_another: bool = False) -> float:
    """How well one memory answers a query, 0..1, from evidence about that memory alone:
    close in meaning (cosine), or holding the query's rare words (``keyword_evidence``);
    lowered for a conversation turn ``by_another`` person than the query names
    (``said_by_another``), which is rarely about the one it asks about.

    Unlike the fused rank (z-scores over the candidates) it reads the same with one
    candidate or a thousand, so a floor on it can say "nothing relevant"."""
    score = max(0.0, min(1.0, max(cosine, coverage)))
    return score * (1.0 - ANOTHER_SPEAKER_DISCOUNT) if by_another else score


def keyword_evidence(memory: Memory, cosine: float, own: float, window: float) -> float:
    """The share of the query's word weight a memory holds. Its thread neighbours' words
    count only where a thread means something, memories of one event or conversation
    (the same ``occurred_at``), and only for a memory at least loosely about the query:
    notes typed in the same second say nothing about each other. A word a neighbour says
    is weaker evidence than one the memory says itself (``WINDOW_WEIGHT``)."""
    if memory.occurred_at is None or cosine < NEIGHBOUR_GATE:
        return own
    return max(own, WINDOW_WEIGHT * window)


@dataclass
class Candidate:
    """A row proposed by the retrievers, with its evidence, before it is decrypted."""

    row: Any
    fused: float  # rank score: z-scores of both retrievers over the candidates, summed
    cosine: float
    own: float  # share of the query's word weight in its own words
    window: float  # ... in its own and its thread neighbours' words


def favour_period(hits: list[Hit], period: tuple[datetime, datetime]) -> list[Hit]:
    """A query that names a time ("last week", "in March") puts what happened then first."""
    # stable: keeps the ranking within each
    return sorted(hits, key=lambda h: not happened_in(h.memory, period))


def happened_in(memory: Memory, period: tuple[datetime, datetime]) -> bool:
    start, end = period
    return start <= from_iso(memory.occurred_at or memory.created_at) < end


# Words of a question about a conversation rather than about a fact.
_ABOUT_TALK = re.compile(r"\b(talk\w*|said|say|discuss\w*|conversations?|chat\w*|mention\w*|"
                         r"told|episodes?)\b", re.IGNORECASE)


def crowded_by_episodes(hits: list[Hit], query: str) -> bool:
    """Whether transcripts took places a question about facts should give to facts."""
    return any(h.memory.kind == "episode" for h in hits) and not _ABOUT_TALK.search(query)


def facts_first(hits: list[Hit]) -> list[Hit]:
    """A chat's transcript repeats the words of every fact it mentions, so it ranks
    beside them: put what is known before transcripts of saying it (stable: keeps the
    ranking within each). A question about a conversation, or a time, keeps them."""
    return sorted(hits, key=lambda h: h.memory.kind == "episode")


def top(scores: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` highest scores, best first (partial sort: fast at 100k)."""
    if count >= len(scores):
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, count)[:count]
    return part[np.argsort(-scores[part], kind="stable")]


def zscore(values: np.ndarray) -> np.ndarray:
    spread = float(values.std()) if len(values) else 0.0
    return (values - values.mean()) / spread if spread > 1e-9 else np.zeros_like(values)
