"""Recall's ranking after fusion, as pure functions over candidates: no store, no keys,
no model, so each rule is tested on plain numbers (tests/test_retrieval.py).

The retrievers propose candidates best first by a fused rank score (see
``MemoryEngine._fuse``). Some evidence is only known once a candidate is opened (its
text): the functions here turn it into an adjusted rank score, and say when enough
candidates have been opened that no unopened one can still make the top.

What was measured, kept and dropped is in docs/benchmarks.md (issue 14).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

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
