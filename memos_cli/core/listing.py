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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from memos_cli.core.atomic import write_atomic
from memos_cli.core.errors import IntegrityError
from memos_cli.core.sealed import open_file, seal_file

if TYPE_CHECKING:
    from memos_cli.core.keys import Unlocked
    from memos_cli.core.memory import Memory

FORMAT = "memos-listing"
FILE_VERSION = 1
PURPOSE = "listing/v1"
FIELDS = {"ids": "id", "created": "created_at", "status": "status", "tier": "tier",
          "kind": "kind"}  # column: the Memory attribute it holds


@dataclass
class Columns:
    """The list index's rows, one list per field, in storage order."""

    ids: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    tier: list[str] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    # Each column as it is written (the body of a JSON string), kept up to date by
    # ``append``: a remember in a long-lived process (the agent) then encodes only its
    # own rows, not 100k of them again (20 of a remember's 96 ms at 100k).
    _written: dict[str, str] = field(default_factory=dict, repr=False, compare=False,
                                     init=False)

    def append(self, memories: Sequence["Memory"]) -> None:
        for name, attribute in FIELDS.items():
            column, values = getattr(self, name), [getattr(m, attribute) for m in memories]
            if name in self._written and values:
                self._written[name] += ("\\n" if column else "") + _json_body("\n".join(values))
            column.extend(values)

    def written(self, name: str) -> str:
        """Column ``name`` joined by newlines, as the body of a JSON string."""
        if name not in self._written:
            self._written[name] = _json_body("\n".join(getattr(self, name)))
        return self._written[name]

    def keep(self, positions: list[int]) -> "Columns":
        return Columns(*([getattr(self, name)[n] for n in positions] for name in FIELDS))


class ListIndex:
    """The list index of one profile: read, kept up to date by writes, rebuilt when stale."""

    def __init__(self, path: Path, context: str) -> None:
        self.path, self.context = path, context
        self._rows: Columns | None = None
        self._stamp: str | None = None  # the generation the cached rows are current for
        self._loaded = False

    def reset(self) -> None:
        """Forget what was read (another process may have replaced the file)."""
        self._rows, self._stamp, self._loaded = None, None, False

    def current(self, keys: "Unlocked", generation: str | None) -> Columns | None:
        """The rows if the file is current for ``generation``, else None."""
        self._read(keys)
        return self._rows if self._rows is not None and self._stamp == (generation or "") else None

    def changed(self, keys: "Unlocked", before: str | None, now: str | None, *,
                added: Sequence["Memory"] = (), updated: Sequence["Memory"] = (),
                removed: Iterable[str] = ()) -> None:
        """Record a write made under generation ``now``, if the index was current just
        before it (generation ``before``) or already records an earlier part of it."""
        self._read(keys)
        rows, gone, fresh = self._rows, set(removed), {m.id: m for m in updated}
        if rows is None or self._stamp not in (before or "", now or ""):
            if gone:  # a stale file may not keep a forgotten memory's id and times
                self.drop()
            return
        if gone or fresh:  # rare (forget, edits): the whole list is walked
            rows = rows.keep([n for n, i in enumerate(rows.ids) if i not in gone])
            for n, memory_id in enumerate(rows.ids):
                if memory_id in fresh:
                    for name, attribute in FIELDS.items():
                        getattr(rows, name)[n] = getattr(fresh[memory_id], attribute)
        rows.append(added)
        self._write(keys, rows, now)

    def rebuild(self, keys: "Unlocked", generation: str | None,
                memories: Sequence["Memory"]) -> None:
        """Write the index afresh from every memory, in storage order, unless current."""
        if self.current(keys, generation) is None:
            rows = Columns()
            rows.append(memories)
            self._write(keys, rows, generation)

    def drop(self) -> None:
        """Remove the file: writes follow that this module does not see."""
        self.path.unlink(missing_ok=True)
        self.reset()

    def _write(self, keys: "Unlocked", rows: Columns, generation: str | None) -> None:
        columns = ",".join(f'"{name}":"{rows.written(name)}"' for name in FIELDS)
        payload = (f'{{"gen":{json.dumps(generation or "")},"count":{len(rows.ids)},'
                   f'{columns}}}').encode()
        try:
            # Unsynced: derived data; a power cut leaves the old file, stamped stale.
            write_atomic(self.path, seal_file(FORMAT, FILE_VERSION, keys.next or keys.current,
                                              PURPOSE, payload, self.context), sync=False)
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
            doc = json.loads(payload)
            count = int(doc["count"])
            columns = [str(doc[name]).split("\n") if count else [] for name in FIELDS]
            if any(len(column) != count for column in columns):
                raise ValueError("columns of different lengths")
            self._rows, self._stamp = Columns(*columns), str(doc["gen"])
        except (IntegrityError, ValueError, KeyError, TypeError):
            self._rows = None  # damaged or sealed under a retired key: rebuilt when stale


def _json_body(text: str) -> str:
    """``text`` as it stands between the quotes of a JSON string."""
    return json.dumps(text)[1:-1]


def newest_first(rows: Columns, *, kind: str | None, tier: str | None,
                 include_inactive: bool) -> list[str]:
    """Ids of the rows that pass, newest first; rows recorded in the same second keep
    their storage order reversed, as ``MemoryEngine.list`` orders them."""
    created = rows.created
    order = sorted(range(len(created)), key=created.__getitem__)
    return [rows.ids[n] for n in reversed(order)
            if (include_inactive or rows.status[n] == "active")
            and (kind is None or rows.kind[n] == kind)
            and (tier is None or rows.tier[n] == tier)]
