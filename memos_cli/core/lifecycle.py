"""The memory lifecycle: tiers, the keep-score, and planning a consolidation.

Memories live in three tiers: ``working`` (the current session's context),
``short`` (recent episodes and new facts) and ``long`` (consolidated facts,
preferences, instructions). A memory's keep-score mixes its importance, how
recently it was used or changed (exponential decay with a half-life) and how often
it was recalled. Consolidation reads the memories and plans, as data, what to do:
merge memories that say the same thing (never merely similar ones: see sameness.py),
summarise old episodes (only with a model), promote, demote,
archive. The engine applies a plan all or nothing. This module decides; it never
writes anything and never sees the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Sequence

import numpy as np

from memos_cli.core.memory import Memory
from memos_cli.core.sameness import anchors, statement_key
from memos_cli.core.timeparse import from_iso

LONG_TERM_KINDS = ("instruction", "preference")


@dataclass(frozen=True)
class Rules:
    """The lifecycle's knobs; every one can be set under ``[lifecycle]`` in config.toml."""

    half_life_days: float = 30.0
    weight_importance: float = 0.5
    weight_recency: float = 0.3
    weight_use: float = 0.2
    promote_uses: int = 3  # recalled this often -> long-term
    promote_importance: float = 0.8  # or this important
    demote_score: float = 0.25  # long-term below this, and older than demote_age_days -> short
    demote_age_days: float = 90.0
    archive_score: float = 0.2  # short-term below this, and older than archive_age_days -> archived
    archive_age_days: float = 60.0
    merge_similarity: float = 0.92  # cosine at or above: a model may be asked "the same fact?"
    contradiction_similarity: float = 0.75  # from here up: a model may be asked "contradicts?"
    episode_age_days: float = 14.0  # older episodes are summarised (with a model)
    cap_working: int = 200
    cap_short: int = 20000
    cap_long: int = 5000
    auto_after: int = 200  # consolidate by itself after this many new memories; 0 = never

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> "Rules":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(section) - known
        if unknown:
            from memos_cli.core.errors import UsageError

            raise UsageError(f"unknown [lifecycle] setting(s): {', '.join(sorted(unknown))}")
        types = {f: type(getattr(cls(), f)) for f in known}
        return cls(**{k: types[k](v) for k, v in section.items()})

    def cap(self, tier: str) -> int:
        return {"working": self.cap_working, "short": self.cap_short, "long": self.cap_long}[tier]


def initial_tier(kind: str) -> str:
    """Where a new memory starts: what a person states as lasting goes long-term at once."""
    return "long" if kind in LONG_TERM_KINDS else "short"


def keep_score(memory: Memory, now: datetime, rules: Rules) -> float:
    """0..1: how much a memory deserves to stay in its tier."""
    last = from_iso(memory.last_access or memory.updated_at or memory.created_at)
    age_days = max((now - last).total_seconds() / 86400.0, 0.0)
    recency = 0.5 ** (age_days / rules.half_life_days)
    use = 1.0 - math.exp(-memory.access_count / 3.0)
    return (rules.weight_importance * memory.importance + rules.weight_recency * recency
            + rules.weight_use * use)


def age_days(memory: Memory, now: datetime) -> float:
    return (now - from_iso(memory.created_at)).total_seconds() / 86400.0


# --- plans -------------------------------------------------------------------------------


@dataclass
class Action:
    """One step of a plan. ``kind``: merge, supersede, summarise, promote, demote, archive."""

    kind: str
    ids: list[str]  # the memories acted on (for merge: the ones merged away)
    reason: str
    into: str | None = None  # merge: the survivor; supersede: the newer memory
    texts: list[str] = field(default_factory=list)  # summarise: the new facts

    def to_json(self) -> dict[str, Any]:
        data = {"action": self.kind, "ids": self.ids, "reason": self.reason}
        if self.into:
            data["into"] = self.into
        if self.texts:
            data["texts"] = self.texts
        return data


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what could not be done, and why

    def count(self, kind: str) -> int:
        return sum(1 for a in self.actions if a.kind == kind)

    def to_json(self) -> dict[str, Any]:
        return {"actions": [a.to_json() for a in self.actions], "skipped": self.skipped,
                "summary": {k: self.count(k) for k in
                            ("merge", "supersede", "summarise", "promote", "demote", "archive")}}


Summariser = Callable[[list[str]], list[str]]  # episode texts -> lasting facts
Judge = Callable[[str, str], bool]  # (older, newer) -> does the newer contradict the older?
SameJudge = Callable[[str, str], bool]  # (one, other) -> do they state the same fact?
MAX_JUDGED_PAIRS = 200  # bounds the model calls one consolidation makes


def plan_consolidation(memories: Sequence[Memory], vectors: dict[str, np.ndarray],
                       now: datetime, rules: Rules, summarise: Summariser | None = None,
                       judge: Judge | None = None, same: SameJudge | None = None) -> Plan:
    """Decide what a consolidation would do, without doing it."""
    plan = Plan()
    active = [m for m in memories if m.status == "active"]
    merged = _plan_merges(active, vectors, rules, same, plan)
    remaining = [m for m in active if m.id not in merged]
    superseded = _plan_contradictions(remaining, vectors, rules, judge, plan)
    remaining = [m for m in remaining if m.id not in superseded]
    summarised = _plan_summaries(remaining, now, rules, summarise, plan)
    remaining = [m for m in remaining if m.id not in summarised]
    _plan_tiers(remaining, now, rules, plan)
    return plan


def _plan_merges(active: list[Memory], vectors: dict[str, np.ndarray], rules: Rules,
                 same: SameJudge | None, plan: Plan) -> set[str]:
    """Merge memories that say the same thing; the newest wording stays current.

    Without a model only equal statement keys merge (see sameness.py); with one,
    similar pairs whose anchors agree are asked "same fact or different facts?".
    """
    usable = [m for m in active if m.kind != "episode"]
    groups: dict[tuple[Any, ...], list[Memory]] = {}
    for memory in usable:  # in storage order
        groups.setdefault((memory.kind, memory.occurred_at, statement_key(memory.text)),
                          []).append(memory)
    reason = "the same statement (case, punctuation, spelling and contractions aside)"
    merged = [(group, reason) for group in groups.values() if len(group) > 1]
    taken = {m.id for group, _ in merged for m in group}
    merged += _judged_same(usable, vectors, rules, same, taken, plan)
    gone: set[str] = set()
    for group, why in merged:
        ordered = sorted(group, key=lambda m: m.created_at)  # stable: ties keep storage order
        survivor, others = ordered[-1], ordered[:-1]
        plan.actions.append(Action("merge", [m.id for m in others], why, into=survivor.id))
        gone.update(m.id for m in others)
    return gone


def _judged_same(usable: list[Memory], vectors: dict[str, np.ndarray], rules: Rules,
                 same: SameJudge | None, taken: set[str],
                 plan: Plan) -> list[tuple[list[Memory], str]]:
    """Similar pairs a model calls one fact; pairs whose numbers or names differ are never asked."""
    candidates = [m for m in usable if m.id in vectors and m.id not in taken]
    pairs = [(a, b, sim) for a, b, sim in _similar_pairs(candidates, vectors,
                                                         rules.merge_similarity, 2.0)
             if candidates[a].kind == candidates[b].kind
             and candidates[a].occurred_at == candidates[b].occurred_at
             and anchors(candidates[a].text) == anchors(candidates[b].text)]
    pairs = sorted(pairs, key=lambda p: -p[2])[:MAX_JUDGED_PAIRS]
    if not pairs:
        return []
    if same is None:
        plan.skipped.append(f"merges: {len(pairs)} similar pair(s) worded differently not "
                            "checked: no model configured")
        return []
    found: list[tuple[list[Memory], str]] = []
    for a, b, _similarity in pairs:
        first, second = candidates[a], candidates[b]
        if first.id in taken or second.id in taken:
            continue
        if same(first.text, second.text):
            found.append(([first, second], "the model judged them the same fact"))
            taken.update((first.id, second.id))
    return found


def _plan_contradictions(remaining: list[Memory], vectors: dict[str, np.ndarray],
                         rules: Rules, judge: Judge | None, plan: Plan) -> set[str]:
    """Similar facts that a model judges contradictory: the newer supersedes the older."""
    facts = [m for m in remaining if m.id in vectors and m.kind in ("fact", "preference")]
    pairs = sorted(_similar_pairs(facts, vectors, rules.contradiction_similarity, 2.0),
                   key=lambda p: -p[2])[:MAX_JUDGED_PAIRS]
    if not pairs:
        return set()
    if judge is None:
        plan.skipped.append(f"contradictions: {len(pairs)} similar pair(s) not checked: "
                            "no model configured")
        return set()
    retired: set[str] = set()
    for a, b, _similarity in pairs:
        # a < b is storage order: it breaks ties between memories of the same second.
        older, newer = ((facts[a], facts[b]) if facts[a].created_at <= facts[b].created_at
                        else (facts[b], facts[a]))
        if older.id in retired or newer.id in retired:
            continue
        if judge(older.text, newer.text):
            plan.actions.append(Action("supersede", [older.id], "contradicted by a newer memory",
                                       into=newer.id))
            retired.add(older.id)
    return retired


def _similar_pairs(memories: list[Memory], vectors: dict[str, np.ndarray], low: float,
                   high: float) -> list[tuple[int, int, float]]:
    """Index pairs (a < b) whose cosine is in [low, high), computed blockwise so memory
    stays bounded at 100k memories."""
    if len(memories) < 2:
        return []
    matrix = np.vstack([vectors[m.id] for m in memories]).astype(np.float32)
    pairs = []
    for start in range(0, len(memories), 1024):
        block = matrix[start:start + 1024] @ matrix.T
        for i, j in zip(*np.nonzero((block >= low) & (block < high))):
            a, b = start + int(i), int(j)
            if a < b:
                pairs.append((a, b, float(block[i, j])))
    return pairs


def _plan_summaries(remaining: list[Memory], now: datetime, rules: Rules,
                    summarise: Summariser | None, plan: Plan) -> set[str]:
    """Old episodes, grouped by session, become lasting facts (only with a model)."""
    old = [m for m in remaining if m.kind == "episode" and age_days(m, now) >= rules.episode_age_days]
    if not old:
        return set()
    if summarise is None:
        plan.skipped.append(f"summaries of {len(old)} old episode(s): no model configured")
        return set()
    sessions: dict[str, list[Memory]] = {}
    for memory in old:
        sessions.setdefault(memory.source_ref or memory.created_at[:10], []).append(memory)
    done: set[str] = set()
    for session, episodes in sorted(sessions.items()):
        facts = [f.strip() for f in summarise([m.text for m in episodes]) if f.strip()]
        if facts:
            plan.actions.append(Action("summarise", [m.id for m in episodes],
                                       f"episodes of {session} older than "
                                       f"{rules.episode_age_days:g} days", texts=facts))
            done.update(m.id for m in episodes)
    return done


def _plan_tiers(memories: list[Memory], now: datetime, rules: Rules, plan: Plan) -> None:
    scored = {m.id: keep_score(m, now, rules) for m in memories}
    moved: set[str] = set()
    for m in memories:
        score = scored[m.id]
        if m.tier != "long" and (m.access_count >= rules.promote_uses
                                 or m.importance >= rules.promote_importance):
            why = (f"recalled {m.access_count} times" if m.access_count >= rules.promote_uses
                   else f"importance {m.importance:g}")
            plan.actions.append(Action("promote", [m.id], why))
            moved.add(m.id)
        elif (m.tier == "long" and score < rules.demote_score
              and age_days(m, now) >= rules.demote_age_days and m.kind != "instruction"):
            plan.actions.append(Action("demote", [m.id], f"keep-score {score:.2f}"))
            moved.add(m.id)
        elif (m.tier == "short" and score < rules.archive_score
              and age_days(m, now) >= rules.archive_age_days and m.kind != "instruction"):
            plan.actions.append(Action("archive", [m.id],
                                       f"keep-score {score:.2f}, unused for "
                                       f"{age_days(m, now):.0f} days"))
            moved.add(m.id)
    _plan_caps(memories, scored, moved, rules, plan)


def _plan_caps(memories: list[Memory], scored: dict[str, float], moved: set[str],
               rules: Rules, plan: Plan) -> None:
    """Over a tier's cap, the lowest-scored step down: long -> short -> archived."""
    for tier, step in (("long", "demote"), ("short", "archive"), ("working", "demote")):
        members = sorted((m for m in memories if m.tier == tier and m.id not in moved),
                         key=lambda m: scored[m.id])
        excess = len(members) - rules.cap(tier)
        for m in members[:max(excess, 0)]:
            plan.actions.append(Action(step, [m.id], f"{tier}-term tier over its cap of "
                                                     f"{rules.cap(tier)}"))
            moved.add(m.id)
