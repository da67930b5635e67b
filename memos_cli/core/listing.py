"""The list index: what `memos list -n N` sorts and filters on, so that it decrypts only
the N memories it prints.

Per profile, per memory in storage order: its id, when it was recorded, its status, tier
and kind, and its text tag (the keyed hash Chroma's metadata holds too, which finds an
exact duplicate: a long-lived process that holds the index looks a remembered text up
here instead of asking Chroma, whose lookup by metadata reads every row: 7-10 ms at
100k). Nothing that gives the text back. It is derived data, like the keyword
index, and like it is kept in two sealed files: a base, and a delta holding the rows
added since (at most ``DELTA_MAX``), so that a `remember` rewrites the delta alone: at
100k memories the base is 3 MB, and sealing and writing it was the largest cost of a
remember in the agent that the store's own work does not explain.

The index names the store generation (``store.gen``) it is current for: every write
takes a new generation, and a write that keeps the index up to date stamps it with the
new one (the delta's stamp, or the base's when there is no delta); any other write (an
older memos, a consolidation, a restore, a crash half-way) leaves it stamped with an
older one, and it is then ignored until ``MemoryEngine.all_memories`` (which opens
every memory anyway) writes it afresh. The base's header names, unsealed, a random
token and its stamp (neither says anything about a memory), so a remember can append
to the delta without unsealing the base; the delta names the token of its base.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, NamedTuple, Sequence

from memos_cli.core.atomic import write_atomic
from memos_cli.core.errors import IntegrityError, VersionError
from memos_cli.core.sealed import open_file, read_header, seal_file

if TYPE_CHECKING:
    from memos_cli.core.keys import DataKey, Unlocked
    from memos_cli.core.memory import Memory

FORMAT = "memos-listing"
FILE_VERSION = 2  # 2: a base and a delta, the base's token and stamp in its header; 1: one file
DELTA_FORMAT = "memos-listing-delta"
DELTA_FILE_VERSION = 1
PURPOSE = "listing/v1"
DELTA_MAX = 1000  # rows the delta holds before they are written into the base
FIELDS = {"ids": "id", "created": "created_at", "status": "status", "tier": "tier",
          "kind": "kind"}  # column: the Memory attribute it holds
COLUMNS = (*FIELDS, "tags")  # and each memory's text tag, which the caller gives

Tagger = Callable[["Memory"], str]  # a memory's text tag (RecordCodec.text_tag of its text)


@dataclass
class Columns:
    """The list index's rows, one list per field, in storage order."""

    ids: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    tier: list[str] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    # Each column as it is written (the body of a JSON string), kept up to date by
    # ``append``: when a long-lived process (the agent) writes the base again, it
    # encodes only the rows added since, not 100k of them (20 ms at 100k).
    _written: dict[str, str] = field(default_factory=dict, repr=False, compare=False,
                                     init=False)

    def append(self, memories: Sequence["Memory"], tag: Tagger) -> None:
        self.extend([*([getattr(m, attribute) for m in memories] for attribute in FIELDS.values()),
                     [tag(m) for m in memories]])

    def extend(self, columns: Sequence[list[str]]) -> None:
        """Add rows given as one list per column, in ``COLUMNS`` order."""
        for name, values in zip(COLUMNS, columns):
            column = getattr(self, name)
            if name in self._written and values:
                self._written[name] += ("\\n" if column else "") + _json_body("\n".join(values))
            column.extend(values)

    def columns(self) -> list[list[str]]:
        return [getattr(self, name) for name in COLUMNS]

    def written(self, name: str) -> str:
        """Column ``name`` joined by newlines, as the body of a JSON string."""
        if name not in self._written:
            self._written[name] = _json_body("\n".join(getattr(self, name)))
        return self._written[name]

    def keep(self, positions: list[int]) -> "Columns":
        return Columns(*([column[n] for n in positions] for column in self.columns()))

    def encode(self, **stamp: str) -> bytes:
        """The rows as a JSON object, with ``stamp``'s fields beside them."""
        columns = ",".join(f'"{name}":"{self.written(name)}"' for name in COLUMNS)
        fields = "".join(f"{json.dumps(k)}:{json.dumps(v)}," for k, v in stamp.items())
        return f'{{{fields}"count":{len(self.ids)},{columns}}}'.encode()

    @classmethod
    def decode(cls, payload: bytes) -> tuple["Columns", dict]:
        """(rows, the whole document) of what ``encode`` wrote."""
        doc = json.loads(payload)
        count = int(doc["count"])
        doc.setdefault("tags", "\n" * (count - 1))  # version 1 held no tags: "" (unknown)
        columns = [str(doc[name]).split("\n") if count else [] for name in COLUMNS]
        if any(len(column) != count for column in columns):
            raise ValueError("columns of different lengths")
        return cls(*columns), doc


class _Head(NamedTuple):
    """The base file's header: read without the key."""

    key_id: str
    token: str | None  # None: a version 1 file (no delta; its stamp is sealed inside)
    stamp: str | None


class ListIndex:
    """The list index of one profile: read, kept up to date by writes, rebuilt when stale."""

    def __init__(self, path: Path, delta_path: Path, context: str) -> None:
        self.path, self.delta_path, self.context = path, delta_path, context
        self.reset()

    def reset(self) -> None:
        """Forget what was read (another process may have replaced the files)."""
        self._head: _Head | None = None
        self._delta = Columns()  # the rows added since the base
        self._all: Columns | None = None  # base and delta, once the base is unsealed
        self._by_tag: dict[str, list[str]] | None = None  # ids by text tag, once asked for
        self._stamp: str | None = None  # the generation base and delta are current for
        self._loaded = False

    def current(self, keys: "Unlocked", generation: str | None) -> Columns | None:
        """The rows if the index is current for ``generation``, else None."""
        self._load(keys)
        if self._stamp != (generation or "") or self._head is None:
            return None
        return self._rows(keys)

    def tagged(self, *generations: str | None) -> dict[str, list[str]] | None:
        """Ids by text tag, if the index is in memory (this never reads it), current for
        one of ``generations`` and knows every row's tag (a version 1 index did not
        hold them); else None: the store is to be asked."""
        if self._all is None or self._stamp not in [g or "" for g in generations]:
            return None
        if self._by_tag is None:
            by_tag: dict[str, list[str]] = {}
            for memory_id, tag in zip(self._all.ids, self._all.tags):
                by_tag.setdefault(tag, []).append(memory_id)
            self._by_tag = by_tag
        return None if "" in self._by_tag else self._by_tag

    def changed(self, keys: "Unlocked", before: str | None, now: str | None, *,
                tag: Tagger, added: Sequence["Memory"] = (), updated: Sequence["Memory"] = (),
                removed: Iterable[str] = ()) -> None:
        """Record a write made under generation ``now``, if the index was current just
        before it (generation ``before``) or already records an earlier part of it."""
        self._load(keys)
        gone, fresh = set(removed), {m.id: m for m in updated}
        if self._head is None or self._stamp not in (before or "", now or ""):
            if gone:  # a stale index may not keep a forgotten memory's id and times
                self.drop()
            return
        key = keys.next or keys.current
        if not (gone or fresh) and self._head.token is not None \
                and self._head.key_id == key.key_id \
                and len(self._delta.ids) + len(added) <= DELTA_MAX:
            self._append(key, added, tag, now or "")
            return
        rows = self._rows(keys)
        if rows is None:
            self.drop()  # a damaged base: rebuilt by the next full listing
            return
        if gone or fresh:  # rare (forget, edits): the whole list is walked
            rows = rows.keep([n for n, i in enumerate(rows.ids) if i not in gone])
            for n, memory_id in enumerate(rows.ids):
                if memory_id in fresh:
                    for name, attribute in FIELDS.items():
                        getattr(rows, name)[n] = getattr(fresh[memory_id], attribute)
                    rows.tags[n] = tag(fresh[memory_id])
        rows.append(added, tag)
        self._write_base(key, rows, now or "")

    def rebuild(self, keys: "Unlocked", generation: str | None, memories: Sequence["Memory"],
                tag: Tagger) -> None:
        """Write the index afresh from every memory, in storage order, unless current."""
        if self.current(keys, generation) is None:
            rows = Columns()
            rows.append(memories, tag)
            self._write_base(keys.next or keys.current, rows, generation or "")

    def drop(self) -> None:
        """Remove the files: writes follow that this module does not see."""
        self.delta_path.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)
        self.reset()

    # --- writing --------------------------------------------------------------------

    def _append(self, key: "DataKey", added: Sequence["Memory"], tag: Tagger,
                stamp: str) -> None:
        """Add rows by rewriting the delta alone."""
        assert self._head is not None and self._head.token is not None
        start = len(self._delta.ids)
        self._delta.append(added, tag)
        payload = self._delta.encode(base=self._head.token, gen=stamp)
        if not self._seal(self.delta_path, DELTA_FORMAT, DELTA_FILE_VERSION, key, payload,
                          self.context + "/delta"):
            return
        self._stamp = stamp
        if self._all is not None:
            self._all.extend([column[start:] for column in self._delta.columns()])
        if self._by_tag is not None:
            for memory_id, memory_tag in zip(self._delta.ids[start:], self._delta.tags[start:]):
                self._by_tag.setdefault(memory_tag, []).append(memory_id)

    def _write_base(self, key: "DataKey", rows: Columns, stamp: str) -> None:
        """Write every row as the base, and no delta."""
        # The old delta goes first: a crash before the new base is written leaves the
        # old base alone, stamped with an older generation (stale), never a delta that
        # lists a forgotten memory on top of a base that no longer does.
        self.delta_path.unlink(missing_ok=True)
        token = secrets.token_hex(8)
        payload = rows.encode(gen=stamp, token=token)
        if self._seal(self.path, FORMAT, FILE_VERSION, key, payload, self.context,
                      {"token": token, "gen": stamp}):
            self._head, self._stamp, self._loaded = _Head(key.key_id, token, stamp), stamp, True
            self._delta, self._all, self._by_tag = Columns(), rows, None

    def _seal(self, path: Path, fmt: str, version: int, key: "DataKey", payload: bytes,
              context: str, public: dict[str, str | int] | None = None) -> bool:
        try:
            # Unsynced: derived data; a power cut leaves the old file, stamped stale.
            write_atomic(path, seal_file(fmt, version, key, PURPOSE, payload, context, public),
                         sync=False)
            return True
        except OSError:
            # A full disk: the write it records did happen, so no stale file may stay.
            self.drop()
            return False

    # --- reading --------------------------------------------------------------------

    def _load(self, keys: "Unlocked") -> None:
        """Read the base's header and the delta (not the base: ``_rows`` unseals it)."""
        if self._loaded:
            return
        self._loaded = True
        self._head = _read_head(self.path)
        if self._head is None:
            return
        if self._head.token is None:  # version 1: the stamp is sealed in the base
            self._rows(keys)
            return
        self._stamp = self._head.stamp
        try:
            blob = self.delta_path.read_bytes()
        except FileNotFoundError:
            return
        try:
            _key_id, payload = open_file(self.delta_path, blob, DELTA_FORMAT, DELTA_FILE_VERSION,
                                         keys, PURPOSE, self.context + "/delta")
            delta, doc = Columns.decode(payload)
        except (IntegrityError, ValueError, KeyError, TypeError):
            self._stamp = None  # damaged: not current, so rebuilt by the next full listing
            return
        if doc.get("base") == self._head.token:  # (else the delta of an older base)
            self._delta, self._stamp = delta, str(doc["gen"])

    def _rows(self, keys: "Unlocked") -> Columns | None:
        """The base's rows with the delta's after them; None if the base is damaged."""
        if self._all is None:
            base = self._read_base(keys)
            if base is None:
                self._head = self._stamp = None
                return None
            base.extend(self._delta.columns())
            self._all = base
        return self._all

    def _read_base(self, keys: "Unlocked") -> Columns | None:
        try:
            blob = self.path.read_bytes()
            _key_id, payload = open_file(self.path, blob, FORMAT, FILE_VERSION, keys, PURPOSE,
                                         self.context)
            rows, doc = Columns.decode(payload)
        except (FileNotFoundError, IntegrityError, ValueError, KeyError, TypeError):
            return None  # gone, damaged or sealed under a retired key: rebuilt when stale
        head = self._head
        if head is not None and head.token is None:
            self._stamp = str(doc["gen"])
        elif head is None or doc.get("token") != head.token or doc.get("gen") != head.stamp:
            return None  # a header that does not match what is sealed: not trusted
        return rows


def _read_head(path: Path) -> _Head | None:
    """The base file's header; None if there is none or it does not read (rebuilt)."""
    doc = read_header(path)
    if doc is None or doc.get("format") != FORMAT:
        return None
    try:
        version = int(doc["version"])
        key_id, token, stamp = str(doc["key_id"]), doc.get("token"), doc.get("gen")
    except (ValueError, KeyError, TypeError):
        return None
    if version > FILE_VERSION:
        raise VersionError(f"{path} was written by a later memos: upgrade memos")
    if version < 2:
        return _Head(key_id, None, None)
    if not (isinstance(token, str) and isinstance(stamp, str)):
        return None
    return _Head(key_id, token, stamp)


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
