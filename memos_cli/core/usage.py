"""How often recall returned each memory, and when last: the input that promotes memories.

Recording a use in the store itself would rewrite Chroma rows (and its index files)
on every recall, which at 100k memories costs more than the recall. So uses are
kept in a small sealed file beside the store, one per profile and machine, and
added to a memory's stored counts whenever it is read for display or for the
lifecycle. It holds ids, counts and times; no text. It is tagged with the id of
the key that sealed it (``sealed.py``), so a key rotation re-seals it safely.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Iterable

from memos_cli.core.atomic import file_identity, write_atomic
from memos_cli.core.errors import IntegrityError
from memos_cli.core.keys import Unlocked
from memos_cli.core.memory import Memory
from memos_cli.core.sealed import open_file, seal_file

USAGE_FORMAT = "memos-usage"
USAGE_VERSION = 2  # 1: a bare sealed blob, without the key id
PURPOSE = "usage/v1"


class UsageLog:
    def __init__(self, path: Path, context: str) -> None:
        self.path, self.context = path, context
        self._uses: dict[str, list] | None = None  # id -> [count, last ISO time]
        self._identity: tuple[int, int, int] | None = None  # of the file ``_uses`` came from

    def _load(self, keys: Unlocked) -> dict[str, list]:
        """The counts, read again when another process has replaced the file since (a
        long-lived engine, in the agent or an MCP server, must not write back stale
        counts over theirs: recording happens under the store lock)."""
        if self._uses is None or self._identity != file_identity(self.path):
            self._identity = file_identity(self.path)
            try:
                blob = self.path.read_bytes()
                _key_id, payload = open_file(self.path, blob, USAGE_FORMAT, USAGE_VERSION, keys,
                                             PURPOSE, self.context)
                self._uses = dict(json.loads(zlib.decompress(payload)))
            except (FileNotFoundError, IntegrityError, zlib.error, ValueError, TypeError):
                self._uses = {}  # counts are advisory: a lost file only slows promotion
        return self._uses

    def record(self, keys: Unlocked, ids: Iterable[str], when: str) -> None:
        uses = self._load(keys)
        for memory_id in ids:
            count, _last = uses.get(memory_id, [0, None])
            uses[memory_id] = [count + 1, when]
        self._save(keys)

    def forget(self, keys: Unlocked, ids: Iterable[str]) -> None:
        uses = self._load(keys)
        if any(uses.pop(memory_id, None) is not None for memory_id in list(ids)):
            self._save(keys)

    def apply(self, keys: Unlocked, memory: Memory) -> Memory:
        """``memory`` with its recorded uses added (for reading, never for writing back)."""
        count, last = self._load(keys).get(memory.id, [0, None])
        if count:
            memory.access_count += count
            memory.last_access = max(filter(None, (memory.last_access, last)))
        return memory

    def load(self, keys: Unlocked) -> dict[str, list]:
        """Every recorded use: id -> [count, last ISO time]."""
        return dict(self._load(keys))

    def replace(self, keys: Unlocked, uses: dict[str, list]) -> None:
        self._uses = dict(uses)
        self._save(keys)

    def reseal(self, keys: Unlocked) -> None:
        """Re-seal under the writing key (a file that does not open is left as it is)."""
        self._uses = None
        if self.path.exists() and self._load(keys):
            self._save(keys)

    def reset(self) -> None:
        self._uses = self._identity = None

    def _save(self, keys: Unlocked) -> None:
        payload = zlib.compress(json.dumps(self._uses).encode())
        write_atomic(self.path, seal_file(USAGE_FORMAT, USAGE_VERSION, keys.next or keys.current,
                                          PURPOSE, payload, self.context), sync=False)
        self._identity = file_identity(self.path)

