"""Carrying out a consolidation plan (see core/lifecycle.py) on the store, all or nothing.

Before the first change, the store's files (Chroma, keyword index, audit trail) are
copied aside with a marker saying the copy is complete. Any failure, Ctrl-C included,
puts the copy back before the error goes on; a killed process leaves the copy and
its marker, and the next memos process to take the store lock puts it back first.
So after any interruption the store is exactly as before, or exactly as after.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from memos_cli.core.config import read_config
from memos_cli.core.failpoint import FAILPOINT_ENV, failpoint as _failpoint  # noqa: F401
from memos_cli.core.lifecycle import (Action, Judge, Plan, Rules, SameJudge, Summariser,
                                plan_consolidation)
from memos_cli.core.memory import Memory, Version
from memos_cli.core.timeparse import now_utc, to_iso

if TYPE_CHECKING:
    from memos_cli.engine import MemoryEngine, UnitOfWork
    from memos_cli.engine.state import Profile

SNAPSHOT_PREFIX = ".consolidation-"
READY = "READY"  # written last into a snapshot: the copy is complete


def rules_for(engine: "MemoryEngine") -> Rules:
    return Rules.from_config(read_config(engine.paths).get("lifecycle", {}))


def plan(engine: "MemoryEngine", summarise: Summariser | None = None,
         judge: Judge | None = None, same: SameJudge | None = None) -> Plan:
    """What consolidating now would do (reads only)."""
    with engine.unit(write=False) as work:
        if work is None:
            return Plan()
        rows = list(work.store.scan(with_vectors=True))
        memories = [m for _row, m in work.open_rows(rows)]
        # Rotated vectors: dot products are unchanged. (A scan with vectors has them all.)
        vectors = {row.id: row.vector for row in rows if row.vector is not None}
    return plan_consolidation(memories, vectors, now_utc(), rules_for(engine), summarise, judge,
                              same)


def apply(engine: "MemoryEngine", chosen: Plan,
          progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Carry out ``chosen``; returns how many of each action were applied."""
    texts = [t for a in chosen.actions if a.kind == "summarise" for t in a.texts]
    vectors = engine.embedder.embed(texts) if texts else None  # before taking the lock
    done: dict[str, int] = {}
    with engine.unit(write=True) as work:
        assert work is not None
        snapshot = _snapshot_dir(engine)
        _take_snapshot(engine, snapshot)
        _failpoint("consolidate:snapshot-taken")
        try:
            offset = 0
            for n, action in enumerate(chosen.actions, start=1):
                offset = _apply_one(work, action, vectors, offset)
                done[action.kind] = done.get(action.kind, 0) + 1
                _failpoint("consolidate:mid-apply")
                if progress:
                    progress(n, len(chosen.actions))
            _mark_consolidated(work)
            _failpoint("consolidate:before-commit")
        except BaseException:
            _put_back(engine, snapshot)
            raise
        shutil.rmtree(snapshot, ignore_errors=True)  # the commit point
    return done


def recover(engine: "Profile") -> None:
    """Undo any consolidation a killed process left half-applied (under the store lock)."""
    for snapshot in engine.paths.data_dir.glob(SNAPSHOT_PREFIX + "*"):
        if (snapshot / READY).exists():
            _put_back(engine, snapshot, snapshot.name[len(SNAPSHOT_PREFIX):])
            engine.notice("notice: an interrupted consolidation was rolled back")
        else:  # died while copying: nothing had been changed yet
            shutil.rmtree(snapshot, ignore_errors=True)


# --- snapshots ----------------------------------------------------------------------------


def _snapshot_dir(engine: "MemoryEngine") -> Path:
    return engine.paths.data_dir / f"{SNAPSHOT_PREFIX}{engine.profile}"


def _side_files(engine: "Profile", profile: str) -> list[Path]:
    return engine.paths.profile_files(profile).changed_with_rows


def _take_snapshot(engine: "MemoryEngine", snapshot: Path) -> None:
    shutil.rmtree(snapshot, ignore_errors=True)
    snapshot.mkdir(mode=0o700)
    engine.store.snapshot(snapshot / "chroma")
    for path in _side_files(engine, engine.profile):
        if path.exists():
            shutil.copy2(path, snapshot / path.name)
    (snapshot / READY).write_text("")


def _put_back(engine: "Profile", snapshot: Path, profile: str | None = None) -> None:
    profile = profile or engine.profile
    engine.store.restore(snapshot / "chroma")
    for path in _side_files(engine, profile):
        saved = snapshot / path.name
        if saved.exists():
            os.replace(saved, path)
        else:
            path.unlink(missing_ok=True)
    shutil.rmtree(snapshot, ignore_errors=True)
    engine.drop_caches()
    engine.usage.reset()


# --- the actions ------------------------------------------------------------------------------


def _apply_one(work: "UnitOfWork", action: Action,
               vectors: np.ndarray | None, offset: int) -> int:
    """Apply one action; returns the offset into ``vectors`` for the next summary."""
    if action.kind == "merge":
        _merge(work, action)
    elif action.kind == "supersede":
        _supersede(work, action)
    elif action.kind == "summarise":
        assert vectors is not None
        _summarise(work, action, vectors[offset:offset + len(action.texts)])
        return offset + len(action.texts)
    else:
        change = {"promote": _promote, "demote": _demote, "archive": _archive}[action.kind]
        reason = {"promote": "promoted", "demote": "demoted", "archive": "archived"}[action.kind]
        for memory_id in _present(work, action.ids):
            work.modify(memory_id, change, reason)
    return offset


def _present(work: "UnitOfWork", ids: list[str]) -> list[str]:
    # Another process may have forgotten a planned memory since the plan was made.
    # (Chroma returns rows in storage order: keep the order asked for.)
    found = {row.id for row in work.store.get(ids)}
    return [memory_id for memory_id in ids if memory_id in found]


def _merge(work: "UnitOfWork", action: Action) -> None:
    """Fold memories that say the same thing into the newest wording (``action.into``).

    The others' wordings go into its history; it keeps the earliest record and
    validity times, since the fact was known and true from the first time it was said.
    """
    assert action.into is not None
    present = _present(work, [action.into, *action.ids])
    if action.into not in present or len(present) < 2:
        return
    rows = {row.id: row for row in work.store.get(present)}
    survivor = work.codec.open(rows[action.into])
    for memory_id in present[1:]:
        other = work.codec.open(rows[memory_id])
        survivor.history += [replace(v, source_id=v.source_id or other.id) for v in other.history]
        added = [t for t in other.tags if t not in survivor.tags]
        # Which tags came with it is kept, so forgetting it later takes them away again.
        survivor.history.append(Version(other.text, other.kind, list(other.tags),
                                        other.importance, other.updated_at, "merged",
                                        source_id=other.id, added_tags=added))
        survivor.tags = survivor.tags + added
        survivor.importance = max(survivor.importance, other.importance)
        survivor.access_count += other.access_count
        survivor.derived_from.append(other.id)
        survivor.created_at = min(survivor.created_at, other.created_at)
        survivor.valid_from = min(_valid_from(survivor), _valid_from(other))
        work.modify(memory_id, _archive, "merged")
    survivor.updated_at = to_iso(now_utc())
    work.store.update([survivor.id], [work.codec.seal(survivor)])
    work.record("merged", [survivor.id, *present[1:]])


def _valid_from(memory: Memory) -> str:
    return memory.valid_from or memory.created_at


def _supersede(work: "UnitOfWork", action: Action) -> None:
    """The newer memory contradicts the older: the older stops being valid, kept in history."""
    from memos_cli.engine.writing import end_validity

    assert action.into is not None
    present = _present(work, [action.into, *action.ids])
    if len(present) < 2:
        return
    newer = work.codec.open(work.store.get([action.into])[0])
    for old_id in present[1:]:
        work.modify(old_id, end_validity, "superseded")
        newer.derived_from.append(old_id)
    work.store.update([newer.id], [work.codec.seal(newer)])


def _summarise(work: "UnitOfWork", action: Action,
               vectors: np.ndarray) -> None:
    from memos_cli.engine import NewMemory

    episodes = _present(work, action.ids)
    now = to_iso(now_utc())
    facts = [work.new_memory(NewMemory(text, kind="fact", tier="long", importance=0.6,
                                          source="consolidation", derived_from=episodes), now)
             for text in action.texts]
    work.insert(facts, vectors, action="summarised")
    for memory_id in episodes:
        work.modify(memory_id, _archive, "archived")


def _promote(memory: Memory) -> None:
    memory.tier = "long"


def _demote(memory: Memory) -> None:
    memory.tier = "short"


def _archive(memory: Memory) -> None:
    memory.status = "archived"


def _mark_consolidated(work: "UnitOfWork") -> None:
    meta = work.store.meta()
    meta.update(consolidated_at=to_iso(now_utc()), new_since_consolidation=0)
    work.store.set_meta(meta)


def due(engine: "MemoryEngine") -> bool:
    """Whether enough new memories arrived to consolidate by itself (see Rules.auto_after)."""
    rules = rules_for(engine)
    if rules.auto_after <= 0:
        return False
    if engine.new_since_consolidation is not None:  # known from this engine's last add
        return engine.new_since_consolidation >= rules.auto_after
    with engine.unit(write=False) as work:
        if work is None:
            return False
        return int(work.store.meta().get("new_since_consolidation", 0)) >= rules.auto_after


def describe(action: Action, memories: dict[str, Any]) -> list[str]:
    """Readable lines for one action: what merges into what, what is archived, and why."""
    def label(memory_id: str) -> str:
        m = memories.get(memory_id)
        return f"{memory_id[:8]} {m.text!r}" if m is not None else memory_id[:8]

    if action.kind == "merge":
        lines = [f"merge into {label(action.into or '')}  ({action.reason})"]
        lines += [f"  - {label(i)}" for i in action.ids]
        return lines
    if action.kind == "supersede":
        return [f"supersede {label(action.ids[0])}", f"  by {label(action.into or '')}  "
                                                      f"({action.reason})"]
    if action.kind == "summarise":
        lines = [f"summarise {len(action.ids)} episode(s)  ({action.reason})"]
        lines += [f"  + {text!r}" for text in action.texts]
        return lines
    return [f"{action.kind} {label(i)}  ({action.reason})" for i in action.ids]


def mark_consolidated(engine: "MemoryEngine") -> None:
    """A run that found nothing to do: the new memories count as consolidated all the same."""
    with engine.unit(write=True) as work:
        if work is not None:
            _mark_consolidated(work)
