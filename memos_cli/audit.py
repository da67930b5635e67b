"""The audit trail: every change to a profile's store, when, what, which ids, and why.

One event per line, each line sealed (AES-256-GCM, key derived from the data key),
appended with fsync, so the trail is as private as the memories. Events hold ids
and actions, never memory text. When memories are forgotten the trail records only
that something was forgotten and when: their ids are removed from every earlier event.
A line that does not open (a crash mid-append, damage) is counted, not fatal.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from memos_cli import crypto
from memos_cli.atomic import make_private_dirs, write_atomic
from memos_cli.errors import IntegrityError

AUDIT_VERSION = 1
ACTIONS = ("remembered", "imported", "updated", "superseded", "invalidated", "merged",
           "summarised", "archived", "promoted", "demoted", "forgotten", "key changed",
           "reindexed", "restored")


@dataclass
class Event:
    at: str
    action: str
    ids: list[str] = field(default_factory=list)
    cause: str = "library"
    count: int = 0
    v: int = AUDIT_VERSION


class AuditLog:
    """The sealed, append-only event log of one profile."""

    def __init__(self, path: Path, context: str) -> None:
        self.path, self.context = path, context
        self.unreadable = 0

    def append(self, key: bytes, events: Iterable[Event]) -> None:
        lines = b"".join(self._seal(key, e) for e in events)
        if not lines:
            return
        make_private_dirs(self.path.parent)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, lines)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, key: bytes) -> list[Event]:
        self.unreadable = 0
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        events = []
        for line in raw.splitlines():
            try:
                data = json.loads(crypto.unseal(_audit_key(key), crypto.b64d(line.decode()),
                                                self.context))
                events.append(Event(**data))
            except (IntegrityError, ValueError, TypeError, UnicodeDecodeError):
                self.unreadable += 1
        return events

    def strike(self, key: bytes, ids: Iterable[str]) -> None:
        """Remove the given ids from every event (after forgetting); counts stay."""
        gone = set(ids)
        events = self.read(key)
        if not any(gone & set(e.ids) for e in events):
            return
        for event in events:
            event.ids = [i for i in event.ids if i not in gone]
        self.rewrite(key, events)

    def rewrite(self, key: bytes, events: Iterable[Event]) -> None:
        """Write the whole trail again (re-keying after rotation, striking ids)."""
        write_atomic(self.path, b"".join(self._seal(key, e) for e in events))

    def _seal(self, key: bytes, event: Event) -> bytes:
        payload = json.dumps(asdict(event), separators=(",", ":")).encode()
        return crypto.b64e(crypto.seal(_audit_key(key), payload, self.context)).encode() + b"\n"


def _audit_key(key: bytes) -> bytes:
    return crypto.subkey(key, "audit/v1")
