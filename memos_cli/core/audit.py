"""The audit trail: every change to a profile's store, when, what, which ids, and why.

One event per line, each line sealed (AES-256-GCM, key derived from the data key),
appended with fsync, so the trail is as private as the memories. Events hold ids
and actions, never memory text. When memories are forgotten the trail records only
that something was forgotten and when: their ids are removed from every earlier event.

A line is ``a2.<key id>.<sealed event>``: the key id says which data key sealed it
(two exist while ``key rotate`` runs), and the seal authenticates a hash of the line
before it, so an altered, removed or reordered line makes the trail fail its check
(``damaged`` counts such lines). A final line without its newline is an append a
crash cut short, dropped at the next append. Lines of version 1 (no key id, no
chain) are still read, and re-written as version 2 at the next append. The trail is
never re-written from lines that do not open: those are kept byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from memos_cli.core import crypto
from memos_cli.core.atomic import make_private_dirs, write_atomic
from memos_cli.core.errors import IntegrityError, VersionError
from memos_cli.core.keys import DataKey, Unlocked

AUDIT_VERSION = 1  # of an event's fields
LINE_VERSION = 2  # of a line's layout: 1 was a bare sealed event
ACTIONS = ("remembered", "imported", "updated", "superseded", "invalidated", "merged",
           "summarised", "archived", "promoted", "demoted", "forgotten", "key changed",
           "reindexed", "restored")
GENESIS = b"memos-audit-start"


@dataclass
class Event:
    at: str
    action: str
    ids: list[str] = field(default_factory=list)
    cause: str = "library"
    count: int = 0
    v: int = AUDIT_VERSION


@dataclass
class _Line:
    raw: bytes  # without its newline
    event: Event | None  # None: it did not open (kept as it is on any re-write)
    legacy: bool = False


class AuditLog:
    """The sealed, chained, append-only event log of one profile."""

    def __init__(self, path: Path, context: str) -> None:
        self.path, self.context = path, context
        self.damaged = 0

    def append(self, keys: Unlocked, events: Iterable[Event]) -> None:
        events = list(events)
        if not events:
            return
        first, last, torn, size = _ends(self.path)
        if first is not None and b"." not in first:  # a version 1 trail: chain it first
            self.rewrite(keys, [*(line.event or line.raw for line in self._parse(keys)), *events])
            return
        previous = GENESIS if last is None else last
        fresh = b"".join(line + b"\n" for line in self._seal_chain(keys, events, previous))
        make_private_dirs(self.path.parent)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            if torn:  # a crash cut the last append short: it never happened
                os.ftruncate(fd, size - len(torn))
            os.lseek(fd, 0, os.SEEK_END)
            os.write(fd, fresh)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, keys: Unlocked) -> list[Event]:
        """The events that open, oldest first; ``damaged`` counts the lines that do not."""
        return [line.event for line in self._parse(keys) if line.event is not None]

    def lines(self, keys: Unlocked) -> list[Event | bytes]:
        """Every line as what ``rewrite`` takes: an event, or the raw bytes of one that
        does not open."""
        return [line.event or line.raw for line in self._parse(keys)]

    def strike(self, keys: Unlocked, ids: Iterable[str]) -> None:
        """Remove the given ids from every event (after forgetting); counts stay."""
        gone = set(ids)
        lines = self._parse(keys)
        if not any(gone & set(line.event.ids) for line in lines if line.event is not None):
            return
        for line in lines:
            if line.event is not None:
                line.event.ids = [i for i in line.event.ids if i not in gone]
        self.rewrite(keys, [line.event or line.raw for line in lines])

    def reseal(self, keys: Unlocked) -> None:
        """Re-seal every line that opens under the writing key (key rotation)."""
        lines = self._parse(keys)
        writing = (keys.next or keys.current).key_id
        if any(line.event is not None and (line.legacy or _key_id(line.raw) != writing)
               for line in lines):
            self.rewrite(keys, [line.event or line.raw for line in lines])

    def rewrite(self, keys: Unlocked, items: Iterable[Event | bytes]) -> None:
        """Write the whole trail again: events sealed and chained anew, and raw lines
        (those that did not open) kept byte for byte where they were."""
        out: list[bytes] = []
        for item in items:
            previous = out[-1] if out else GENESIS
            out.append(item if isinstance(item, bytes)
                       else self._seal_chain(keys, [item], previous)[0])
        write_atomic(self.path, b"".join(line + b"\n" for line in out))

    # --- lines ---------------------------------------------------------------------------

    def _raw(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""

    def _parse(self, keys: Unlocked) -> list[_Line]:
        self.damaged = 0
        lines = self._raw().split(b"\n")[:-1]  # the last piece is "" or a torn append
        parsed, previous = [], GENESIS
        for raw in lines:
            line = self._open(keys, raw, previous)
            self.damaged += line.event is None
            parsed.append(line)
            previous = raw
        return parsed

    def _open(self, keys: Unlocked, raw: bytes, previous: bytes) -> _Line:
        version, _, rest = raw.partition(b".")
        if not rest:  # version 1: a bare sealed event, unchained, under either key
            opened = (self._unseal(key, raw.decode("latin-1"), b"") for key in keys.each)
            return _Line(raw, next((e for e in opened if e is not None), None), legacy=True)
        if not version.startswith(b"a") or not version[1:].isdigit():
            return _Line(raw, None)
        if int(version[1:]) > LINE_VERSION:
            raise VersionError(f"{self.path} was written by a later memos: upgrade memos")
        key = keys.by_id(_key_id(raw))
        sealed = rest.partition(b".")[2].decode("latin-1")
        return _Line(raw, self._unseal(key, sealed, _link(previous)) if key else None)

    def _unseal(self, key: DataKey, text: str, link: bytes) -> Event | None:
        context = self.context + (f"/{key.key_id}/{link.hex()}" if link else "")
        try:
            data = json.loads(crypto.unseal(_audit_key(key.key), crypto.b64d(text), context))
            return Event(**data)
        except (IntegrityError, ValueError, TypeError):
            return None

    def _seal_chain(self, keys: Unlocked, events: list[Event], previous: bytes) -> list[bytes]:
        key = keys.next or keys.current
        out = []
        for event in events:
            payload = json.dumps(asdict(event), separators=(",", ":")).encode()
            context = f"{self.context}/{key.key_id}/{_link(previous).hex()}"
            sealed = crypto.b64e(crypto.seal(_audit_key(key.key), payload, context))
            previous = f"a{LINE_VERSION}.{key.key_id}.{sealed}".encode()
            out.append(previous)
        return out


def _ends(path: Path) -> tuple[bytes | None, bytes | None, bytes, int]:
    """(the start of the first complete line, the last complete line, the torn piece
    after it, the file's size), read from the two ends of the file only: an append costs
    the same whatever the length of the trail (15 MB after 100k remembers) or of its
    lines (an import of 100k ids is one 2.5 MB line). The start of the first line is
    enough to tell its version: a version 2 line begins "a2.<key id>."."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return None, None, b"", 0
    with fh:
        start_of_first = fh.read(64).split(b"\n", 1)[0]
        size = fh.seek(0, os.SEEK_END)
        block = 1 << 14
        while True:
            start = max(0, size - block)
            fh.seek(start)
            tail = fh.read(size - start)
            end = tail.rfind(b"\n")
            begin = tail.rfind(b"\n", 0, max(end, 0))
            if begin >= 0 or start == 0:
                break
            block *= 4  # one line longer than the block (an import of many ids)
        if end < 0:
            return None, None, tail, size  # (no complete line: the first is torn too)
        return start_of_first, tail[begin + 1:end], tail[end + 1:], size


def _key_id(raw: bytes) -> str:
    return raw.split(b".")[1].decode("latin-1") if raw.count(b".") >= 2 else ""


def _link(previous: bytes) -> bytes:
    """What a line's seal binds of the line before it: a hash of its bytes."""
    return hashlib.sha256(previous).digest()[:16]


def _audit_key(key: bytes) -> bytes:
    return crypto.subkey(key, "audit/v1")
