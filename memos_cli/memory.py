"""What a memory is: the versioned record, and its (de)serialisation.

A ``Memory`` is what a person sees; its JSON payload is what gets sealed and stored.
The payload carries a schema version: older payloads are migrated on read, newer
ones refused. Fields the lifecycle needs (tier, validity, provenance, access
counts) are here already, so adding that behaviour needs no migration.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from memos_cli.errors import BadInputError, UsageError, VersionError

PAYLOAD_VERSION = 2
KINDS = ("fact", "preference", "event", "instruction", "episode", "note")
SOURCES = ("cli", "chat", "import", "stdin", "model", "consolidation", "mcp")
# Sources an older memos does not know: a memory with one is written as payload
# version 2 so that memos refuses it with "upgrade memos", not "invalid source".
# Every other memory is still written as version 1, readable by any memos.
SOURCES_SINCE = {"mcp": 2}
STATUSES = ("active", "invalid", "archived")
TIERS = ("working", "short", "long")
ID_HEX = 16  # 64 random bits: collisions are not a concern at personal scale
SHORT_ID = 8  # what tables show; any unique prefix works on input
_ID_RE = re.compile(r"^[0-9a-f]{8,32}$")


@dataclass
class Version:
    """An earlier state of a memory, kept in its history."""

    text: str
    kind: str
    tags: list[str]
    importance: float
    updated_at: str
    reason: str = "update"
    source_id: str | None = None  # set when the text came from another memory (a merge)


@dataclass
class Memory:
    id: str
    text: str
    kind: str = "note"
    tags: list[str] = field(default_factory=list)
    importance: float = 0.5
    created_at: str = ""
    updated_at: str = ""
    occurred_at: str | None = None
    source: str = "cli"
    source_ref: str | None = None
    status: str = "active"
    history: list[Version] = field(default_factory=list)
    # Lifecycle fields, used by consolidation and time-aware recall.
    tier: str = "short"
    valid_from: str | None = None
    valid_to: str | None = None
    derived_from: list[str] = field(default_factory=list)
    access_count: int = 0
    last_access: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Memory":
        """Build from a dict (stored payload or import line); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise BadInputError(f"unknown field(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        values["history"] = [Version(**v) for v in values.get("history", [])]
        memory = cls(**values)
        memory.validate()
        return memory

    def validate(self) -> None:
        """Raise ``BadInputError`` unless every field has an allowed value."""
        checks = [
            (isinstance(self.id, str) and _ID_RE.match(self.id) is not None,
             "id (8-32 lower-case hex digits)"),
            (isinstance(self.text, str) and self.text.strip() != "", "text (empty)"),
            (self.kind in KINDS, f"kind (one of {', '.join(KINDS)})"),
            (isinstance(self.tags, list) and all(isinstance(t, str) for t in self.tags), "tags"),
            (isinstance(self.importance, (int, float)) and 0 <= self.importance <= 1,
             "importance (0..1)"),
            (self.status in STATUSES, "status"),
            (self.tier in TIERS, "tier"),
            (self.source in SOURCES, "source"),
        ]
        for ok, name in checks:
            if not ok:
                raise BadInputError(f"invalid {name}")


CORRECTED = "corrected"  # the reason of a change that fixes a mistake, not a change in the world


def as_of(memory: Memory, moment: str) -> Memory:
    """The memory as it read at ``moment`` (an ISO time), from its own history.

    Each history version started at its ``updated_at`` and ended when the next one
    did. A version replaced by a correction was never right, so at its times the
    memory reads as corrected. Versions folded in from other memories by a merge are
    not this memory's past and are skipped. Before its first version, the first.
    """
    own = [v for v in memory.history if v.source_id is None]
    states = [(v.updated_at, v.text, v.kind, list(v.tags), v.importance, v.reason) for v in own]
    states.append((memory.updated_at, memory.text, memory.kind, memory.tags, memory.importance,
                   ""))
    for n in range(len(states) - 2, -1, -1):  # a correction reaches back over what it fixed
        if states[n][5] == CORRECTED:
            states[n] = (states[n][0], *states[n + 1][1:5], CORRECTED)
    chosen = states[0]
    for state in states:
        if state[0] <= moment:
            chosen = state
    if chosen is states[-1]:
        return memory
    _start, text, kind, tags, importance, _reason = chosen
    return replace(memory, text=text, kind=kind, tags=tags, importance=importance)


def new_id() -> str:
    return secrets.token_hex(ID_HEX // 2)


def check_kind(kind: str | None) -> str | None:
    if kind is not None and kind not in KINDS:
        raise UsageError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    return kind


def normalise_tags(tags: list[str] | None) -> list[str]:
    """Lower-case, strip, de-duplicate, keep order; commas split too."""
    out: list[str] = []
    for raw in tags or []:
        for tag in raw.split(","):
            tag = tag.strip().lower()
            if tag and tag not in out:
                out.append(tag)
    return out


def needed_version(memory: Memory) -> int:
    """The oldest payload (and export) version that can hold ``memory``."""
    return SOURCES_SINCE.get(memory.source, 1)


def payload_from_memory(memory: Memory) -> dict[str, Any]:
    return {"v": needed_version(memory), "m": memory.to_dict()}


def memory_from_payload(payload: dict[str, Any]) -> Memory:
    version = int(payload.get("v", 0))
    if version > PAYLOAD_VERSION:
        raise VersionError("a memory was written by a later version of memos: upgrade memos")
    # Version 2 only added the source "mcp": a version 1 payload reads as it is.
    # A later schema adds its migration step here.
    return Memory.from_dict(payload["m"])
