"""Carrying out a consolidation plan (see lifecycle.py) on the store, all or nothing.

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

from memos_cli.config import read_config
from memos_cli.failpoint import FAILPOINT_ENV, failpoint as _failpoint  # noqa: F401
from memos_cli.lifecycle import (Action, Judge, Plan, Rules, SameJudge, Summariser,
                                plan_consolidation)
from memos_cli.memory import Memory, Version
from memos_cli.timeparse import now_utc, to_iso

if TYPE_CHECKING:
    from memos_cli.engine import MemoryEngine
    from memos_cli.records import RecordCodec

SNAPSHOT_PREFIX = ".consolidation-"
READY = "READY"  # written last into a snapshot: the copy is complete


def rules_for(engine: "MemoryEngine") -> Rules:
    return Rules.from_config(read_config(engine.paths).get("lifecycle", {}))


def plan(engine: "MemoryEngine", summarise: Summariser | None = None,
         judge: Judge | None = None, same: SameJudge | None = None) -> Plan:
    """What consolidating now would do (reads only)."""
    with engine._session(write=False) as codec:
        if codec is None:
            return Plan()
        rows = list(engine.store.scan(with_vectors=True))
        memories = [m for _row, m in engine._open_rows(codec, rows)]
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
    with engine._session(write=True) as codec:
        assert codec is not None
        snapshot = _snapshot_dir(engine)
        _take_snapshot(engine, snapshot)
        _failpoint("consolidate:snapshot-taken")
        try:
            offset = 0
            for n, action in enumerate(chosen.actions, start=1):
                offset = _apply_one(engine, codec, action, vectors, offset)
                done[action.kind] = done.get(action.kind, 0) + 1
                _failpoint("consolidate:mid-apply")
                if progress:
                    progress(n, len(chosen.actions))
            _mark_consolidated(engine)
            _failpoint("consolidate:before-commit")
        except BaseException:
            _put_back(engine, snapshot)
            raise
        shutil.rmtree(snapshot, ignore_errors=True)  # the commit point
    return done


def recover(engine: "MemoryEngine") -> None:
    """Undo any consolidation a killed process left half-applied (under the store lock)."""
    for snapshot in engine.paths.data_dir.glob(SNAPSHOT_PREFIX + "*"):
        if (snapshot / READY).exists():
            _put_back(engine, snapshot, snapshot.name[len(SNAPSHOT_PREFIX):])
            engine._notice("notice: an interrupted consolidation was rolled back")
        else:  # died while copying: nothing had been changed yet
            shutil.rmtree(snapshot, ignore_errors=True)


# --- snapshots ----------------------------------------------------------------------------


def _snapshot_dir(engine: "MemoryEngine") -> Path:
    return engine.paths.data_dir / f"{SNAPSHOT_PREFIX}{engine.profile}"


def _side_files(engine: "MemoryEngine", profile: str) -> list[Path]:
    return engine.paths.profile_files(profile).changed_with_rows


def _take_snapshot(engine: "MemoryEngine", snapshot: Path) -> None:
    shutil.rmtree(snapshot, ignore_errors=True)
    snapshot.mkdir(mode=0o700)
    engine.store.snapshot(snapshot / "chroma")
    for path in _side_files(engine, engine.profile):
        if path.exists():
            shutil.copy2(path, snapshot / path.name)
    (snapshot / READY).write_text("")


def _put_back(engine: "MemoryEngine", snapshot: Path, profile: str | None = None) -> None:
    profile = profile or engine.profile
    engine.store.restore(snapshot / "chroma")
    for path in _side_files(engine, profile):
        saved = snapshot / path.name
        if saved.exists():
            os.replace(saved, path)
        else:
            path.unlink(missing_ok=True)
    shutil.rmtree(snapshot, ignore_errors=True)
    engine._keywords = None
    engine.usage.reset()


# --- the actions ------------------------------------------------------------------------------


def _apply_one(engine: "MemoryEngine", codec: "RecordCodec", action: Action,
               vectors: np.ndarray | None, offset: int) -> int:
    """Apply one action; returns the offset into ``vectors`` for the next summary."""
    if action.kind == "merge":
        _merge(engine, codec, action)
    elif action.kind == "supersede":
        _supersede(engine, codec, action)
    elif action.kind == "summarise":
        assert vectors is not None
        _summarise(engine, codec, action, vectors[offset:offset + len(action.texts)])
        return offset + len(action.texts)
    else:
        change = {"promote": _promote, "demote": _demote, "archive": _archive}[action.kind]
        reason = {"promote": "promoted", "demote": "demoted", "archive": "archived"}[action.kind]
        for memory_id in _present(engine, action.ids):
            engine._modify(codec, memory_id, change, reason, None)
    return offset


def _present(engine: "MemoryEngine", ids: list[str]) -> list[str]:
    # Another process may have forgotten a planned memory since the plan was made.
    # (Chroma returns rows in storage order: keep the order asked for.)
    found = {row.id for row in engine.store.get(ids)}
    return [memory_id for memory_id in ids if memory_id in found]


def _merge(engine: "MemoryEngine", codec: "RecordCodec", action: Action) -> None:
    """Fold memories that say the same thing into the newest wording (``action.into``).

    The others' wordings go into its history; it keeps the earliest record and
    validity times, since the fact was known and true from the first time it was said.
    """
    assert action.into is not None
    present = _present(engine, [action.into, *action.ids])
    if action.into not in present or len(present) < 2:
        return
    rows = {row.id: row for row in engine.store.get(present)}
    survivor = codec.open(rows[action.into])
    for memory_id in present[1:]:
        other = codec.open(rows[memory_id])
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
        engine._modify(codec, memory_id, _archive, "merged", None)
    survivor.updated_at = to_iso(now_utc())
    engine.store.update([survivor.id], [codec.seal(survivor)])
    engine._audit("merged", [survivor.id, *present[1:]])


def _valid_from(memory: Memory) -> str:
    return memory.valid_from or memory.created_at


def _supersede(engine: "MemoryEngine", codec: "RecordCodec", action: Action) -> None:
    """The newer memory contradicts the older: the older stops being valid, kept in history."""
    from memos_cli.engine import _end_validity

    assert action.into is not None
    present = _present(engine, [action.into, *action.ids])
    if len(present) < 2:
        return
    newer = codec.open(engine.store.get([action.into])[0])
    for old_id in present[1:]:
        engine._modify(codec, old_id, _end_validity, "superseded", None)
        newer.derived_from.append(old_id)
    engine.store.update([newer.id], [codec.seal(newer)])


def _summarise(engine: "MemoryEngine", codec: "RecordCodec", action: Action,
               vectors: np.ndarray) -> None:
    from memos_cli.engine import NewMemory

    episodes = _present(engine, action.ids)
    now = to_iso(now_utc())
    facts = [engine._new_memory(NewMemory(text, kind="fact", tier="long", importance=0.6,
                                          source="consolidation", derived_from=episodes), now)
             for text in action.texts]
    engine._insert(codec, facts, vectors, action="summarised")
    for memory_id in episodes:
        engine._modify(codec, memory_id, _archive, "archived", None)


def _promote(memory: Memory) -> None:
    memory.tier = "long"


def _demote(memory: Memory) -> None:
    memory.tier = "short"


def _archive(memory: Memory) -> None:
    memory.status = "archived"


def _mark_consolidated(engine: "MemoryEngine") -> None:
    meta = engine.store.meta()
    meta.update(consolidated_at=to_iso(now_utc()), new_since_consolidation=0)
    engine.store.set_meta(meta)


def due(engine: "MemoryEngine") -> bool:
    """Whether enough new memories arrived to consolidate by itself (see Rules.auto_after)."""
    rules = rules_for(engine)
    if rules.auto_after <= 0:
        return False
    if engine.new_since_consolidation is not None:  # known from this engine's last add
        return engine.new_since_consolidation >= rules.auto_after
    with engine._session(write=False) as codec:
        if codec is None:
            return False
        return int(engine.store.meta().get("new_since_consolidation", 0)) >= rules.auto_after


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
    with engine._session(write=True) as codec:
        if codec is not None:
            _mark_consolidated(engine)
