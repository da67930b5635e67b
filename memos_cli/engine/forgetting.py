"""Forgetting memories for good, following provenance; and destroying a whole profile.

Forgetting a memory forgets the summaries consolidation made from it (the cascade)
and rebuilds any other memory that holds its text in its history (a merge), so no
text, vector or old version of it stays on disk.
"""

from __future__ import annotations

from typing import Sequence

from memos_cli.engine.indexing import keyword_index, save_keywords
from memos_cli.core.memory import Memory
from memos_cli.engine.opening import journal, locked, reindex_store, session
from memos_cli.engine.reading import resolve
from memos_cli.core.records import RecordCodec
from memos_cli.engine.state import ProfileState


def forget(s: ProfileState, ids: Sequence[str], *, cascade: bool = True) -> int:
    """Delete memories for good (see MemoryEngine.forget)."""
    with session(s, write=True) as codec:
        if codec is None:
            return 0
        full = sorted({resolve(s, ref) for ref in ids})
        doomed, rebuilt = _provenance(s, codec, full, cascade)
        index = keyword_index(s)
        _strip_sources(s, codec, rebuilt, set(doomed))
        # The trail keeps that something was forgotten, and when; not which.
        s.audit_log.strike(s.unlocked_keys(), doomed)
        s.usage.forget(s.unlocked_keys(), doomed)
        # Journalled like an add: if the server drops or memos is killed half-way,
        # the deletion is finished (never undone) at the next open.
        with journal(s, doomed, s.event("forgotten", [], count=len(doomed))):
            s.store.scrub_delete(doomed, s.dim())
        index.remove(doomed)
        s.damaged = [i for i in s.damaged if i not in set(doomed)]  # gone for good
        save_keywords(s)
        s.listed(removed=doomed)
        return len(doomed)


def forget_preview(s: ProfileState, ids: Sequence[str], *, cascade: bool = True
                   ) -> tuple[list[Memory], list[Memory]]:
    """(memories that forgetting ``ids`` deletes, memories it rebuilds), changing nothing."""
    with session(s, write=False) as codec:
        if codec is None:
            return [], []
        full = sorted({resolve(s, ref) for ref in ids})
        doomed, rebuilt = _provenance(s, codec, full, cascade)
        opened = [m for _row, m in s.open_rows(codec, s.store.get(doomed))]
        return opened, rebuilt


def _provenance(s: ProfileState, codec: RecordCodec, ids: list[str],
                cascade: bool) -> tuple[list[str], list[Memory]]:
    """The ids to delete (``ids`` and, with ``cascade``, summaries made from them)
    and the other memories that refer to any of them."""
    children: dict[str, list[Memory]] = {}
    for _row, memory in s.open_rows(codec, s.store.scan(), with_usage=False):
        for source in memory.derived_from:
            children.setdefault(source, []).append(memory)
    doomed, queue, touched = set(ids), list(ids), {}
    while queue:
        for child in children.get(queue.pop(), []):
            if cascade and child.source == "consolidation" and child.id not in doomed:
                doomed.add(child.id)
                queue.append(child.id)
            else:
                touched[child.id] = child
    return sorted(doomed), [m for i, m in touched.items() if i not in doomed]


def _strip_sources(s: ProfileState, codec: RecordCodec, memories: list[Memory],
                   gone: set[str]) -> None:
    """Remove every trace of ``gone`` memories from ``memories`` (history, links)."""
    for memory in memories:
        brought = {t for v in memory.history if v.source_id in gone for t in v.added_tags}
        memory.history = [v for v in memory.history if v.source_id not in gone]
        still = {t for v in memory.history if v.source_id is not None for t in v.tags}
        memory.tags = [t for t in memory.tags if t not in brought or t in still]
        memory.derived_from = [i for i in memory.derived_from if i not in gone]
    if memories:
        s.store.update([m.id for m in memories], [codec.seal(m) for m in memories])


def forget_all(s: ProfileState) -> int:
    """Destroy the profile: every memory, the collection and the keys (see
    MemoryEngine.forget_all)."""
    with locked(s, unlock=False):
        count = s.store.count() if s.store.exists() else 0
        s.store.drop()
        reindex_store(s).drop()
        s.keys.destroy()
        for path in s.paths.profile_files(s.profile).everything:
            path.unlink(missing_ok=True)
        s.usage.reset()
        s.listing.reset()
        s.damaged = []
        s.unlocked = s.codec = s.keywords = None
        s.bump_generation()
        return count
