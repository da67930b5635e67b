"""How often recall returned each memory, and when last: the input that promotes memories.

Recording a use in the store itself would rewrite Chroma rows (and its index files)
on every recall, which at 100k memories costs more than the recall. So uses are
kept in a small sealed file beside the store, one per profile and machine, and
added to a memory's stored counts whenever it is read for display or for the
lifecycle. It holds ids, counts and times; no text.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Iterable

from memos_cli import crypto
from memos_cli.atomic import write_atomic
from memos_cli.errors import IntegrityError
from memos_cli.memory import Memory


class UsageLog:
    def __init__(self, path: Path, context: str) -> None:
        self.path, self.context = path, context
        self._uses: dict[str, list] | None = None  # id -> [count, last ISO time]

    def _load(self, key: bytes) -> dict[str, list]:
        if self._uses is None:
            try:
                blob = self.path.read_bytes()
                self._uses = json.loads(zlib.decompress(
                    crypto.unseal(_usage_key(key), blob, self.context)))
            except (FileNotFoundError, IntegrityError, zlib.error, ValueError):
                self._uses = {}  # counts are advisory: a lost file only slows promotion
        return self._uses

    def record(self, key: bytes, ids: Iterable[str], when: str) -> None:
        uses = self._load(key)
        for memory_id in ids:
            count, _last = uses.get(memory_id, [0, None])
            uses[memory_id] = [count + 1, when]
        self._save(key)

    def forget(self, key: bytes, ids: Iterable[str]) -> None:
        uses = self._load(key)
        if any(uses.pop(memory_id, None) is not None for memory_id in list(ids)):
            self._save(key)

    def apply(self, key: bytes, memory: Memory) -> Memory:
        """``memory`` with its recorded uses added (for reading, never for writing back)."""
        count, last = self._load(key).get(memory.id, [0, None])
        if count:
            memory.access_count += count
            memory.last_access = max(filter(None, (memory.last_access, last)))
        return memory

    def load(self, key: bytes) -> dict[str, list]:
        """Every recorded use: id -> [count, last ISO time]."""
        return dict(self._load(key))

    def replace(self, key: bytes, uses: dict[str, list]) -> None:
        self._uses = dict(uses)
        self._save(key)

    def rekey(self, old: bytes, new: bytes) -> None:
        uses = self._load(old)
        self._save(new, uses)

    def reset(self) -> None:
        self._uses = None

    def _save(self, key: bytes, uses: dict | None = None) -> None:
        payload = zlib.compress(json.dumps(uses if uses is not None else self._uses).encode())
        write_atomic(self.path, crypto.seal(_usage_key(key), payload, self.context), sync=False)


def _usage_key(key: bytes) -> bytes:
    return crypto.subkey(key, "usage/v1")
