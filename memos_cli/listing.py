"""The list index: what `memos list -n N` sorts and filters on, so that it decrypts only
the N memories it prints.

One sealed file per profile holding, per memory in storage order, its id, when it was
recorded, and its status, tier and kind: nothing derived from its text. It is derived
data, like the keyword index. It names the store generation (``store.gen``) it is
current for: every write takes a new generation, and a write that keeps this file up
to date stamps it with the new one; any other write (an older memos, a consolidation,
a restore, a crash half-way) leaves it stamped with an older one, and it is then
ignored until ``MemoryEngine.all_memories`` (which opens every memory anyway) writes it
afresh.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from memos_cli.atomic import write_atomic
from memos_cli.errors import IntegrityError
from memos_cli.sealed import open_file, seal_file

if TYPE_CHECKING:
    from memos_cli.keys import Unlocked
    from memos_cli.memory import Memory

FORMAT = "memos-listing"
FILE_VERSION = 1
PURPOSE = "listing/v1"
COLUMNS = ("ids", "created", "status", "tier", "kind")


@dataclass
class Listed:
    """One memory as the list index knows it."""

    id: str
    created: str
    status: str
    tier: str
    kind: str

    @classmethod
    def of(cls, memory: "Memory") -> "Listed":
        return cls(memory.id, memory.created_at, memory.status, memory.tier, memory.kind)


class ListIndex:
    """The list index of one profile: read, kept up to date by writes, rebuilt when stale."""

    def __init__(self, path: Path, context: str) -> None:
        self.path, self.context = path, context
        self._rows: list[Listed] | None = None
        self._stamp: str | None = None  # the generation the cached rows are current for
        self._loaded = False

    def reset(self) -> None:
        """Forget what was read (another process may have replaced the file)."""
        self._rows, self._stamp, self._loaded = None, None, False

    def current(self, keys: "Unlocked", generation: str | None) -> list[Listed] | None:
        """The rows in storage order if the file is current for ``generation``, else None."""
        self._read(keys)
        return self._rows if self._rows is not None and self._stamp == (generation or "") else None

    def changed(self, keys: "Unlocked", before: str | None, now: str | None, *,
                added: Sequence["Memory"] = (), updated: Sequence["Memory"] = (),
                removed: Iterable[str] = ()) -> None:
        """Record a write made under generation ``now``, if the index was current just
        before it (generation ``before``) or already records an earlier part of it."""
        self._read(keys)
        if self._rows is None or self._stamp not in (before or "", now or ""):
            return
        gone = set(removed)
        fresh = {m.id: Listed.of(m) for m in updated}
        rows = [fresh.get(r.id, r) for r in self._rows if r.id not in gone]
        self._write(keys, rows + [Listed.of(m) for m in added], now)

    def rebuild(self, keys: "Unlocked", generation: str | None,
                memories: Sequence["Memory"]) -> None:
        """Write the index afresh from every memory, in storage order, unless current."""
        if self.current(keys, generation) is None:
            self._write(keys, [Listed.of(m) for m in memories], generation)

    def drop(self) -> None:
        """Remove the file: writes follow that this module does not see."""
        self.path.unlink(missing_ok=True)
        self.reset()

    def _write(self, keys: "Unlocked", rows: list[Listed], generation: str | None) -> None:
        columns = {name: "\n".join(getattr(r, field) for r in rows)
                   for name, field in zip(COLUMNS, ("id", "created", "status", "tier", "kind"))}
        doc = {"gen": generation or "", "count": len(rows), **columns}
        payload = zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 1)
        try:
            write_atomic(self.path, seal_file(FORMAT, FILE_VERSION, keys.next or keys.current,
                                              PURPOSE, payload, self.context))
        except OSError:
            # A full disk: the write it records did happen, so no stale file may stay.
            self.drop()
            return
        self._rows, self._stamp, self._loaded = rows, generation or "", True

    def _read(self, keys: "Unlocked") -> None:
        if self._loaded:
            return
        self._loaded = True
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return
        try:
            _key_id, payload = open_file(self.path, blob, FORMAT, FILE_VERSION, keys, PURPOSE,
                                         self.context)
            doc = json.loads(zlib.decompress(payload))
            count = int(doc["count"])
            columns = [str(doc[name]).split("\n") if count else [] for name in COLUMNS]
            if any(len(column) != count for column in columns):
                raise ValueError("columns of different lengths")
            self._rows = [Listed(*values) for values in zip(*columns)]
            self._stamp = str(doc["gen"])
        except (IntegrityError, zlib.error, ValueError, KeyError, TypeError):
            self._rows = None  # damaged or sealed under a retired key: rebuilt when stale


def newest_first(rows: Sequence[Listed], *, kind: str | None, tier: str | None,
                 include_inactive: bool) -> list[str]:
    """Ids of the rows that pass, newest first; rows recorded in the same second keep
    their storage order reversed, as ``MemoryEngine.list`` orders them."""
    order = sorted(range(len(rows)), key=lambda n: rows[n].created)
    return [rows[n].id for n in reversed(order)
            if (include_inactive or rows[n].status == "active")
            and (kind is None or rows[n].kind == kind)
            and (tier is None or rows[n].tier == tier)]
