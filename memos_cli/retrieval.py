"""Recall's ranking after fusion, as pure functions over candidates: no store, no keys,
no model, so each rule is tested on plain numbers (tests/test_retrieval.py).

The retrievers propose candidates best first by a fused rank score (see
``MemoryEngine._fuse``). Some evidence is only known once a candidate is opened (its
text): the functions here turn it into an adjusted rank score, and say when enough
candidates have been opened that no unopened one can still make the top.

What was measured, kept and dropped is in docs/benchmarks.md (issue 14).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# A memory that asks a question ("What books do you have?") shares the words of a
# question about the same thing, but rarely holds its answer: in a conversation the
# answer is the next turn. Measured in z-units of the fused score (LoCoMo, tuning
# conversations: recall@10 0.796 -> 0.819; 0.5 gave 0.808, 1.5 gave 0.817).
QUESTION_PENALTY = 1.0


def asks(text: str) -> bool:
    """Whether a memory's text asks a question."""
    return "?" in text


def answer_score(fused: float, text: str) -> float:
    """A candidate's rank score once its text is known: lowered if it asks a question."""
    return fused - (QUESTION_PENALTY if asks(text) else 0.0)


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
