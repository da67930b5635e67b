"""Writing memories: remember, import, update, invalidate, supersede.

Each write is one journalled batch under the store lock (``opening.session``):
rows, keyword index, the store's counter and the audit trail change together or
not at all. A memory's previous state goes into its history, never lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterator, Sequence

import numpy as np

from memos_cli.core.errors import UsageError
from memos_cli.core.failpoint import failpoint
from memos_cli.engine.indexing import appendable, entry, keyword_index, save_keywords
from memos_cli.search.keyword import tokenize
from memos_cli.core.lifecycle import initial_tier
from memos_cli.core.memory import CORRECTED, Memory, Version, check_kind, new_id, normalise_tags
from memos_cli.engine.opening import journal, session, warm
from memos_cli.engine.reading import resolve
from memos_cli.core.records import RecordCodec
from memos_cli.core.store import Row
from memos_cli.engine.state import Progress, ProfileState
from memos_cli.core.timeparse import now_utc, to_iso


@dataclass
class RememberResult:
    memory: Memory
    created: bool  # False: the exact same text was already stored


@dataclass
class ImportResult:
    added: int = 0
    skipped: int = 0


@dataclass
class NewMemory:
    """What a caller supplies to remember one memory."""

    text: str
    kind: str = "note"
    tags: list[str] = field(default_factory=list)
    importance: float = 0.5
    occurred_at: datetime | None = None
    source: str = "cli"
    source_ref: str | None = None
    valid_from: datetime | None = None
    derived_from: list[str] = field(default_factory=list)
    tier: str | None = None  # None: where its kind starts (see lifecycle.initial_tier)


def remember_many(s: ProfileState, items: Sequence[NewMemory]) -> list[RememberResult]:
    """Store several memories at once; exact repeats of stored texts are not added."""
    now = to_iso(now_utc())
    memories = [new_memory(item, now) for item in items]
    if memories:
        s.start_embedder()
    vectors = s.embedder.embed([m.text for m in memories]) if memories else None
    if vectors is not None:
        warm(s, vectors.shape[1])
    with session(s, write=True) as codec:
        assert codec is not None
        return insert(s, codec, memories, vectors)


def insert(s: ProfileState, codec: RecordCodec, memories: list[Memory],
           vectors: np.ndarray | None, action: str = "remembered") -> list[RememberResult]:
    results: list[RememberResult] = []
    fresh: list[int] = []
    tags = [codec.text_tag(m.text) for m in memories]
    stored = _rows_by_tag(s, codec, tags)
    seen: dict[str, int] = {}
    for n, (memory, tag) in enumerate(zip(memories, tags)):
        if tag in stored:
            results.append(RememberResult(stored[tag], created=False))
        elif tag in seen:
            results.append(RememberResult(memories[seen[tag]], created=False))
        else:
            seen[tag] = n
            fresh.append(n)
            results.append(RememberResult(memory, created=True))
    if fresh:
        assert vectors is not None
        _add_rows(s, codec, [memories[n] for n in fresh], vectors[fresh], action)
    return results


def _rows_by_tag(s: ProfileState, codec: RecordCodec, tags: Sequence[str]) -> dict[str, Memory]:
    """Stored memories whose keyed text hash is among ``tags`` (exact-duplicate lookup).

    Each is opened, which checks its hash against its text: a row carrying another
    text's hash is reported damaged, and does not pass for a duplicate."""
    found: dict[str, Memory] = {}
    unique = sorted(set(tags))
    for row, memory in s.open_rows(codec, _rows_with_tags(s, unique), with_usage=False):
        found[row.meta["h"]] = memory
    return found


def _rows_with_tags(s: ProfileState, tags: list[str]) -> Iterator[Row]:
    """The stored rows whose text tag is among ``tags``: looked up by id in the list index
    when a long-lived process holds it current (the agent), else asked of Chroma, whose
    lookup by metadata reads every row (7-10 ms at 100k memories)."""
    known = s.listing.tagged(s.generation_before, s.generation)
    if known is not None:
        yield from s.store.get([i for tag in tags for i in known.get(tag, ())])
        return
    for start in range(0, len(tags), 500):
        batch = tags[start:start + 500]
        yield from s.store.find({"h": batch[0]} if len(batch) == 1 else {"h": {"$in": batch}})


def _add_rows(s: ProfileState, codec: RecordCodec, memories: list[Memory], vectors: np.ndarray,
              action: str) -> None:
    """Store new memories and index their words, as one journalled write."""
    if not memories:
        return
    # Loaded before the add, so it is not seen as stale; opened only to add to when it is
    # not loaded yet (unsealing the whole base grows with the store). A partial one is
    # never kept in ``s.keywords``: it cannot answer queries.
    index = s.keywords or appendable(s, len(memories)) or keyword_index(s)
    ids = [m.id for m in memories]
    # Everything the add changes is inside the journal: a failure anywhere (a full
    # disk) rolls all of it back, and once the journal is cleared nothing can fail.
    with journal(s, ids):
        blinded = codec.blind(vectors)
        s.store.add(ids, blinded, [codec.seal(m, vector=v) for m, v in zip(memories, blinded)])
        failpoint("add:rows-stored")
        index.add([entry(m) for m in memories])
        save_keywords(s, index)
        meta = s.store.meta()  # counts toward consolidating by itself (a number only)
        meta["new_since_consolidation"] = int(meta.get("new_since_consolidation", 0)) + len(ids)
        s.store.set_meta(meta)
        s.new_since_consolidation = meta["new_since_consolidation"]
        s.audit(action, ids)
    s.listed(added=memories)


def new_memory(item: NewMemory, now: str) -> Memory:
    text = item.text.strip()
    if not text:
        raise UsageError("nothing to remember: the text is empty")
    memory = Memory(id=new_id(), text=text, kind=check_kind(item.kind) or "note",
                    tags=normalise_tags(item.tags), importance=float(item.importance),
                    created_at=now, updated_at=now,
                    occurred_at=to_iso(item.occurred_at) if item.occurred_at else None,
                    source=item.source, source_ref=item.source_ref,
                    valid_from=to_iso(item.valid_from) if item.valid_from else None,
                    derived_from=list(item.derived_from),
                    tier=item.tier or initial_tier(item.kind))
    try:
        memory.validate()
    except Exception as exc:
        raise UsageError(str(exc)) from None
    return memory


def update(s: ProfileState, ref: str, text: str | None = None, *, kind: str | None = None,
           tags: list[str] | None = None, importance: float | None = None,
           reason: str = "update") -> Memory:
    """Change a memory; its previous state goes into its history (see MemoryEngine.update)."""
    check_kind(kind)
    new_text = text.strip() if text is not None else None
    if new_text == "":
        raise UsageError("the new text is empty")
    vector = s.embedder.embed([new_text]) if new_text else None

    def change(memory: Memory) -> None:
        memory.text = new_text or memory.text
        memory.kind = kind or memory.kind
        memory.tags = normalise_tags(tags) if tags is not None else memory.tags
        memory.importance = memory.importance if importance is None else float(importance)

    with session(s, write=True) as codec:
        assert codec is not None
        return modify(s, codec, resolve(s, ref), change, reason, vector)


def invalidate(s: ProfileState, ref: str, *, reason: str = "invalidated") -> Memory:
    """Mark a memory no longer valid from now on; it stays, with its history."""
    with session(s, write=True) as codec:
        assert codec is not None
        return modify(s, codec, resolve(s, ref), end_validity, reason, None)


def supersede(s: ProfileState, ref: str, new: NewMemory) -> tuple[Memory, Memory]:
    """A fact changed: the old memory stops being valid now, the new one starts now.

    Returns (old, new); the new memory records the old one in ``derived_from``.
    """
    now = now_utc()
    replacement = new_memory(new, to_iso(now))
    vector = s.embedder.embed([replacement.text])
    with session(s, write=True) as codec:
        assert codec is not None
        old_id = resolve(s, ref)
        replacement.valid_from = to_iso(now)
        replacement.derived_from = [old_id, *replacement.derived_from]
        old = modify(s, codec, old_id, end_validity, "superseded", None)
        result = insert(s, codec, [replacement], vector)[0]
        return old, result.memory


def modify(s: ProfileState, codec: RecordCodec, memory_id: str,
           change: Callable[[Memory], None], reason: str, vector: np.ndarray | None) -> Memory:
    """Apply ``change`` to a stored memory, keeping its previous state in its history."""
    memory = codec.open(s.store.get([memory_id])[0])
    before = memory.text
    memory.history.append(Version(memory.text, memory.kind, list(memory.tags),
                                  memory.importance, memory.updated_at, reason))
    change(memory)
    if memory.text != before:
        clash = s.store.find({"h": codec.text_tag(memory.text)})
        if clash:
            raise UsageError(f"memory {clash[0].id[:8]} already has that text")
    memory.updated_at = to_iso(now_utc())
    memory.validate()
    blinded = codec.blind(vector) if vector is not None else None
    index = keyword_index(s)
    s.store.update([memory.id], [codec.seal(memory, vector=None if blinded is None
                                            else blinded[0])], blinded)
    if memory.text != before:
        index.replace(memory.id, tokenize(memory.text))
        save_keywords(s)
    s.listed(updated=[memory])
    s.audit(_ACTIONS_BY_REASON.get(reason, "updated"), [memory.id])
    return memory


def import_memories(s: ProfileState, memories: Sequence[Memory],
                    progress: Progress | None = None) -> ImportResult:
    """Add exported memories as they were (ids, dates, history); all or nothing.

    A memory whose id or exact text is already stored is skipped, so importing
    the same file twice adds nothing the second time.
    """
    # Embedded before taking the lock, which others would otherwise wait minutes
    # for: the ones found already stored are embedded too, for nothing.
    vectors = s.embed_batched([m.text for m in memories], progress)
    warm(s, vectors.shape[1])
    with session(s, write=True) as codec:
        assert codec is not None
        present = set(s.existing([m.id for m in memories]))
        todo = [n for n, m in enumerate(memories) if m.id not in present]
        tags = [codec.text_tag(memories[n].text) for n in todo]
        texts_seen = set(_rows_by_tag(s, codec, tags))
        batch: list[int] = []
        for n, tag in zip(todo, tags):
            if tag not in texts_seen:
                texts_seen.add(tag)
                batch.append(n)
        _add_rows(s, codec, [memories[n] for n in batch], vectors[batch], "imported")
        return ImportResult(added=len(batch), skipped=len(memories) - len(batch))


def end_validity(memory: Memory) -> None:
    """A change (for ``modify``) that ends a memory's validity now."""
    memory.status = "invalid"
    memory.valid_to = to_iso(now_utc())


_ACTIONS_BY_REASON = {"update": "updated", CORRECTED: "updated", "superseded": "superseded",
                      "invalidated": "invalidated", "merged": "merged", "archived": "archived",
                      "promoted": "promoted", "demoted": "demoted", "summarised": "summarised"}
