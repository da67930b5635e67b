"""The recall loop: propose candidates from both retrievers, open them in rank order,
keep those that pass the filters, and count the recall of what is returned.

The scoring itself (evidence, fusion, ranking) is pure and lives in ``retrieval``;
this module joins it to the store, the keyword index and the codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

import numpy as np

from memos_cli.core import listing

from memos_cli.search import retrieval
from memos_cli.search.embedding import embed_query
from memos_cli.core.errors import UsageError
from memos_cli.engine.indexing import keyword_index, load_keywords
from memos_cli.core.memory import TIERS, Memory, as_of, check_kind
from memos_cli.engine.opening import session, warm
from memos_cli.core.records import RecordCodec
from memos_cli.search.retrieval import (Candidate, Hit, crowded_by_episodes, facts_first, favour_period,
                                 happened_in, keyword_evidence, relevance, top, zscore)
from memos_cli.engine.state import ProfileState
from memos_cli.core.timeparse import from_iso, now_utc, query_period, to_iso

CANDIDATES = 50  # from each retriever, before fusion (more when filters drop many)
# The other wordings of a query (``also``), together, weigh this much against the query's
# own 1.0 in the fused rank (docs/benchmarks.md, issue 14, the optional model step).
ALSO_WEIGHT = 1.0


def recall(s: ProfileState, query: str, limit: int = 10, *, where: Filter | None = None,
           record_access: bool = True, floor: float | None = None, also: Sequence[str] = (),
           **filters: Any) -> list[Hit]:
    """The memories that best answer ``query``, best first (see MemoryEngine.recall).
    ``also``: other wordings of what an answer may say (a model's, see
    ``assistant.expansion``); they help order the candidates, never relevance."""
    if limit <= 0:
        raise UsageError("--limit must be at least 1")
    keep = where or Filter(**filters)
    floor = s.recall_floor if floor is None else floor
    s.start_embedder()
    texts = [query, *(t for t in also if t.strip())]
    vectors = _query_vectors(s, texts)
    # Counting accesses changes metadata only: other processes need not reload.
    with session(s, write=False) as codec:
        if codec is None:
            return []
        index = keyword_index(s)
        scored = [index.scores(text) for text in texts]  # each: (ids, BM25 of every memory)
        ids = scored[0][0]
        weights = [1.0, *(ALSO_WEIGHT / (len(texts) - 1) for _other in texts[1:])]
        probes = [_Probe(vector, scores, weight) for (_ids, scores), vector, weight
                  in zip(scored, codec.blind(vectors), weights)]
        coverage = index.coverage(query)[1:]
        total, want = len(index), max(CANDIDATES, limit * 3)
        period, asked = query_period(query), retrieval.Asked.of(query)
        while True:
            ranked = _fuse(s, probes, ids, coverage, want)
            relevant = _Relevant(keep, floor, period, asked)
            hits = _first_hits(s, codec, ranked, relevant, asked,
                               limit if period is None else want)
            if len(hits) >= limit or want >= total:
                break
            want *= 4
        if period is not None:
            hits = favour_period(hits, period)[:limit]
        elif crowded_by_episodes(hits, query):
            hits = facts_first(_first_hits(s, codec, ranked, relevant, asked, want))[:limit]
        if record_access:
            _touch(s, hits)
        return hits


def _query_vectors(s: ProfileState, texts: list[str]) -> np.ndarray:
    """The queries' embeddings, made before taking the lock (loading the model and
    embedding are not for other processes to wait on). Words found in most memories
    are left out (``KeywordIndex.strip_common``), as the saved keyword index says: it
    is read without the lock, which is safe (it is replaced atomically), and one a
    write or two old serves as well."""
    index = s.keywords
    if index is None and s.unlock() is not None:
        index = load_keywords(s)
    vectors = embed_query(s.embedder, [index.strip_common(t) if index else t for t in texts])
    warm(s, vectors.shape[1])
    return vectors


def _touch(s: ProfileState, hits: list[Hit]) -> None:
    """Count each recall of a memory: use is what promotes it to long-term."""
    if not hits:
        return
    now = to_iso(now_utc())
    s.usage.record(s.unlocked_keys(), [h.memory.id for h in hits], now)
    for hit in hits:
        hit.memory.access_count += 1
        hit.memory.last_access = now


def _first_hits(s: ProfileState, codec: RecordCodec, ranked: list[Candidate],
                keep: _Relevant, asked: retrieval.Asked, limit: int) -> list[Hit]:
    """Open ranked rows in order until the best ``limit`` that pass the filters are
    known (``retrieval.settled``: decrypt no more), best first by their text-adjusted
    rank score (``retrieval.answer_score``)."""
    hits: list[Hit] = []
    scores: list[float] = []
    for candidate in ranked:
        if retrieval.settled(scores, limit, candidate.fused):
            break
        for _row, memory in s.open_rows(codec, [candidate.row]):
            hit = keep(memory, candidate)
            if hit is not None:
                hits.append(hit)
                scores.append(retrieval.answer_score(candidate.fused, memory.text, asked,
                                                     memory.kind == "episode"))
    return [hits[n] for n in retrieval.best_first(scores)[:limit]]


@dataclass(frozen=True)
class _Probe:
    """One text recall searches with: the query (first), or another wording of it."""

    vector: np.ndarray  # blinded, as the store holds vectors
    keyword_scores: np.ndarray  # BM25 of every memory, in keyword-index order
    weight: float  # its share of the fused score


def _fuse(s: ProfileState, probes: list[_Probe], ids: list[str],
          coverage: tuple[np.ndarray, np.ndarray], want: int) -> list[Candidate]:
    """Candidates from both retrievers of every probe, best first by fused rank: for
    each probe, the z-scores of its cosines and BM25 scores over all candidates, summed,
    weighted by the probe's weight. Evidence (cosine, coverage) is the query's alone."""
    rows = _candidate_rows(s, probes, ids, want)
    order = list(rows)
    position = keyword_index(s).positions()
    at = np.array([position.get(i, -1) for i in order], dtype=np.intp)
    indexed = at >= 0

    def per_row(scores: np.ndarray) -> np.ndarray:
        """An array in keyword-index order, read for each candidate (0 where not indexed)."""
        out = np.zeros(len(order))
        out[indexed] = scores[at[indexed]]
        return out

    cosines = [_cosines(rows, probe.vector) for probe in probes]
    fused = np.zeros(len(order))
    for probe, cosine in zip(probes, cosines):
        fused += probe.weight * (zscore(cosine) + zscore(per_row(probe.keyword_scores)))
    own, window = (per_row(scores) for scores in coverage)
    return [Candidate(rows[order[n]], float(fused[n]), float(cosines[0][n]), float(own[n]),
                      float(window[n]))
            for n in np.argsort(-fused, kind="stable")]


def _candidate_rows(s: ProfileState, probes: list[_Probe], ids: list[str],
                    want: int) -> dict[str, Any]:
    """Each probe's ``want`` nearest rows and ``want`` best by words, in one read of the
    store with their vectors (each is checked against its record when opened), in this
    order: the query's nearest, its words', then the other probes' (the ties' order)."""
    wanted: dict[str, None] = {}
    for probe in probes:
        wanted.update((i, None) for i, _distance in s.store.nearest(probe.vector,
                                                                     min(want, len(ids))))
        wanted.update((ids[n], None) for n in top(probe.keyword_scores, want)
                      if probe.keyword_scores[n] > 0)
    got = {row.id: row for row in s.store.get(list(wanted), with_vectors=True)}
    return {i: got[i] for i in wanted if i in got}


def _cosines(rows: dict[str, Any], vector: np.ndarray) -> np.ndarray:
    """Each row's cosine to a blinded query vector (the rotation keeps dot products)."""
    if not rows:
        return np.zeros(0)
    return np.stack([row.vector for row in rows.values()]) @ vector


@dataclass(frozen=True)
class _Relevant:
    """A recall's test of an opened candidate: passes the filters and clears the floor."""

    keep: "Filter"
    floor: float
    period: tuple[datetime, datetime] | None = None  # a time the query names
    asked: retrieval.Asked | None = None  # who the query names, if anyone

    def __call__(self, memory: Memory, candidate: Candidate) -> Hit | None:
        words = keyword_evidence(memory, candidate.cosine, candidate.own, candidate.window)
        another = (self.asked is not None and memory.kind == "episode"
                   and retrieval.said_by_another(memory.text, self.asked))
        score = relevance(candidate.cosine, words, another)
        # Naming a time is evidence too: what happened then clears the floor.
        relevant = score >= self.floor or (self.period is not None
                                           and happened_in(memory, self.period))
        shown = self.keep.shown(memory) if relevant else None
        return None if shown is None else Hit(shown, score, candidate.cosine, words)


@dataclass(frozen=True)
class Filter:
    """Which memories a list or recall may return."""

    kind: str | None = None
    tag: str | None = None
    tier: str | None = None
    since: datetime | None = None  # by when it happened (or was recorded)
    until: datetime | None = None
    at: datetime | None = None  # only what was true then (invalid ones included)
    include_inactive: bool = False

    def __post_init__(self) -> None:
        check_kind(self.kind)
        if self.tier is not None and self.tier not in TIERS:
            raise UsageError(f"unknown tier {self.tier!r}: use one of {', '.join(TIERS)}")

    def shown(self, m: Memory) -> Memory | None:
        """The memory as this filter shows it (as it read at ``at``), or None if left out."""
        if self.at is not None:
            m = as_of(m, to_iso(self.at))
        return m if self(m) else None

    def __call__(self, m: Memory) -> bool:
        when = from_iso(m.occurred_at or m.created_at)
        tag = self.tag.strip().lower() if self.tag else None
        return ((self.include_inactive or self.at is not None or m.status == "active")
                and (self.kind is None or m.kind == self.kind)
                and (tag is None or tag in m.tags)
                and (self.tier is None or m.tier == self.tier)
                and (self.since is None or when >= self.since)
                and (self.until is None or when <= self.until)
                and (self.at is None or _true_at(m, self.at)))


def _true_at(memory: Memory, moment: datetime) -> bool:
    """Recorded by then, valid from before then, and not yet ended then."""
    start = from_iso(memory.valid_from or memory.created_at)
    ended = memory.valid_to is not None and from_iso(memory.valid_to) <= moment
    return (from_iso(memory.created_at) <= moment and start <= moment and not ended
            and memory.status != "archived")


def list_newest(s: ProfileState, limit: int, keep: Filter) -> list[Memory] | None:
    """The newest ``limit`` memories ``keep`` shows, found in the list index so that
    only those are fetched and decrypted; None when the index cannot answer (a filter
    it does not hold, a server's store, or it is not current: see core/listing.py)."""
    if keep.tag or keep.since or keep.until or keep.at or s.store.remote is not None:
        return None
    with session(s, write=False) as codec:
        if codec is None:
            return []
        rows = s.listing.current(s.unlocked_keys(), s.generation)
        if rows is None:
            return None
        ids = listing.newest_first(rows, kind=keep.kind, tier=keep.tier,
                                   include_inactive=keep.include_inactive)
        found: list[Memory] = []
        at = 0
        while len(found) < limit and at < len(ids):  # more only for damaged ones
            batch = ids[at:at + limit - len(found)]
            at += len(batch)
            opened = {row.id: m for row, m in s.open_rows(codec, s.store.get(batch))}
            found += [shown for shown in (keep.shown(opened[i]) for i in batch if i in opened)
                      if shown is not None]
        return found
