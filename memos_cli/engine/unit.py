"""The unit of work: what an opened, unlocked, locked profile hands out for one batch."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import numpy as np

from memos_cli.engine import writing
from memos_cli.engine.indexing import keyword_index
from memos_cli.core.keys import Unlocked
from memos_cli.search.keyword import KeywordIndex
from memos_cli.core.memory import Memory
from memos_cli.core.records import RecordCodec
from memos_cli.engine.state import ProfileState
from memos_cli.engine.writing import NewMemory, RememberResult


class UnitOfWork:
    """What an opened, unlocked, locked profile offers for one batch of changes.

    Handed out by ``MemoryEngine.unit``, valid only inside its ``with`` block (the
    store lock is held). Consolidation, backup and the benchmarks work through it, so
    none of them reaches into the engine's internals.
    """

    def __init__(self, state: ProfileState, codec: RecordCodec) -> None:
        self._state = state
        self.codec = codec  # seals and opens rows
        self.store = state.store

    @property
    def keys(self) -> Unlocked:
        return self._state.unlocked_keys()

    def open_rows(self, rows: Iterable[Any], with_usage: bool = True
                  ) -> Iterator[tuple[Any, Memory]]:
        """Decrypt rows (damaged ones are noted in ``engine.damaged`` and skipped)."""
        return self._state.open_rows(self.codec, rows, with_usage=with_usage)

    def new_memory(self, item: NewMemory, now: str) -> Memory:
        return writing.new_memory(item, now)

    def insert(self, memories: list[Memory], vectors: np.ndarray | None,
               action: str = "remembered") -> list[RememberResult]:
        """Store new memories (journalled, indexed, audited as ``action``)."""
        return writing.insert(self._state, self.codec, memories, vectors, action=action)

    def modify(self, memory_id: str, change: Callable[[Memory], None], reason: str,
               vector: np.ndarray | None = None) -> Memory:
        """Change a stored memory, its previous state kept in its history."""
        return writing.modify(self._state, self.codec, memory_id, change, reason, vector)

    def keyword_index(self) -> KeywordIndex:
        return keyword_index(self._state)

    def record(self, action: str, ids: list[str], count: int = 0) -> None:
        """Add an event to the audit trail."""
        self._state.audit(action, ids, count)
