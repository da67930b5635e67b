"""Reindexing: every memory re-embedded with the configured model into a fresh
collection, swapped in at the end (``opening`` finishes or undoes a killed one)."""

from __future__ import annotations

from typing import Any

import numpy as np

from memos_cli.engine.opening import check_store_key_only, locked, refuse_foreign_store, reindex_store
from memos_cli.core.records import RecordCodec
from memos_cli.engine.state import Progress, ProfileState, store_meta


def reindex(s: ProfileState, progress: Progress | None = None) -> int:
    """Re-embed every memory (see MemoryEngine.reindex); returns how many."""
    with locked(s):
        if s.unlocked is None:
            refuse_foreign_store(s)
            return 0
        if not s.store.exists():
            return 0
        check_store_key_only(s)
        codec = s.new_codec()
        rows = list(s.store.scan())
        memories = [codec.open(row) for row in rows]
        vectors = s.embed_batched([m.text for m in memories], progress)
        _swap_in(s, codec, rows, vectors)
        s.codec = None
        s.bump_generation()
        s.audit("reindexed", [], count=len(memories))
        return len(memories)


def _swap_in(s: ProfileState, codec: RecordCodec, rows: list[Any], vectors: np.ndarray) -> None:
    assert s.unlocked is not None
    temp = reindex_store(s)
    temp.drop()
    temp.create(store_meta(s.unlocked.current, s.embed_meta()))
    blinded = codec.blind(vectors)
    temp.add([r.id for r in rows], blinded,
             [codec.tag_vector(r.meta, r.id, v) for r, v in zip(rows, blinded)])
    s.store.drop()  # the old collection goes first: Chroma names are unique
    temp.collection.modify(name=s.store.collection_name)
    s.store.reset()
    s.store.compact()
