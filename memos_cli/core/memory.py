"""What a memory is: the versioned record, and its (de)serialisation.

A ``Memory`` is what a person sees; its JSON payload is what gets sealed and stored.
The payload carries a schema version: older payloads are migrated on read, newer
ones refused. Fields the lifecycle needs (tier, validity, provenance, access
counts) are here already, so adding that behaviour needs no migration.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Sequence

from memos_cli.core.errors import BadInputError, UsageError, VersionError
from memos_cli.core.timeparse import from_iso

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
    added_tags: list[str] = field(default_factory=list)  # tags the merge brought along


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
        """Build from a dict (stored payload or import line), checking every field's type
        and range; unknown or missing keys and wrong types are ``BadInputError``s that
        name the field, never Python's own errors."""
        _check_keys(data, {f.name for f in fields(cls)}, REQUIRED)
        history = data.get("history", [])
        if not isinstance(history, list):
            raise BadInputError("invalid history (a list of earlier versions)")
        values = dict(data, history=[_version(v, n) for n, v in enumerate(history, 1)])
        memory = cls(**values)
        memory.validate()
        return memory

    def validate(self) -> None:
        """Raise ``BadInputError`` unless every field has an allowed value."""
        checks = [
            (isinstance(self.id, str) and _ID_RE.match(self.id) is not None,
             "id (8-32 lower-case hex digits)"),
            (isinstance(self.text, str) and self.text.strip() != "", "text (empty)"),
            (_is_one_of(self.kind, KINDS), f"kind (one of {', '.join(KINDS)})"),
            (_is_strings(self.tags), "tags (a list of strings)"),
            (_is_number(self.importance) and 0 <= self.importance <= 1, "importance (0..1)"),
            (_is_one_of(self.status, STATUSES), f"status (one of {', '.join(STATUSES)})"),
            (_is_one_of(self.tier, TIERS), f"tier (one of {', '.join(TIERS)})"),
            (_is_one_of(self.source, SOURCES), f"source (one of {', '.join(SOURCES)})"),
            (self.source_ref is None or isinstance(self.source_ref, str), "source_ref (a string)"),
            (_is_strings(self.derived_from) and all(_ID_RE.match(i) for i in self.derived_from),
             "derived_from (a list of ids)"),
            (isinstance(self.access_count, int) and not isinstance(self.access_count, bool)
             and 0 <= self.access_count < 2**53, "access_count (a whole number >= 0)"),
        ]
        checks += [(_is_time(getattr(self, name)), f"{name} (an ISO 8601 time)")
                   for name in ("created_at", "updated_at")]
        checks += [(getattr(self, name) is None or _is_time(getattr(self, name)),
                    f"{name} (an ISO 8601 time, or null)") for name in OPTIONAL_TIMES]
        _require(checks)


REQUIRED = ("id", "text", "created_at", "updated_at")
OPTIONAL_TIMES = ("occurred_at", "valid_from", "valid_to", "last_access")
_VERSION_REQUIRED = ("text", "kind", "tags", "importance", "updated_at")


def _check_keys(data: Any, known: set[str], required: Sequence[str]) -> None:
    if not isinstance(data, dict):
        raise BadInputError("expected a JSON object")
    unknown = set(data) - known
    if unknown:
        raise BadInputError(f"unknown field(s): {', '.join(sorted(unknown))}")
    missing = [name for name in required if name not in data]
    if missing:
        raise BadInputError(f"missing field(s): {', '.join(missing)}")


def _version(data: Any, number: int) -> Version:
    """One earlier version from its dict, checked like a memory's own fields."""
    try:
        _check_keys(data, {f.name for f in fields(Version)}, _VERSION_REQUIRED)
        version = Version(**data)
        checks = [
            (isinstance(version.text, str), "text"), (_is_one_of(version.kind, KINDS), "kind"),
            (_is_strings(version.tags), "tags"),
            (_is_number(version.importance) and 0 <= version.importance <= 1, "importance"),
            (_is_time(version.updated_at), "updated_at"),
            (isinstance(version.reason, str), "reason"),
            (version.source_id is None or (isinstance(version.source_id, str)
                                           and _ID_RE.match(version.source_id) is not None),
             "source_id"),
            (_is_strings(version.added_tags), "added_tags"),
        ]
        _require(checks)
    except BadInputError as exc:
        raise BadInputError(f"history[{number}]: {exc}") from None
    return version


def _require(checks: list[tuple[bool, str]]) -> None:
    """Raise ``BadInputError`` naming the first field whose check failed."""
    for ok, name in checks:
        if not ok:
            raise BadInputError(f"invalid {name}")


def _is_one_of(value: Any, allowed: Sequence[str]) -> bool:
    return isinstance(value, str) and value in allowed


def _is_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_time(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        from_iso(value)
    except (ValueError, OverflowError):
        return False
    return True


CORRECTED = "corrected"  # the reason of a change that fixes a mistake, not a change in the world


def as_of(memory: Memory, moment: str) -> Memory:
    """The memory as it read at ``moment`` (an ISO time), from its own history.

    Each history version started at its ``updated_at`` and ended when the next one
    did. A version replaced by a correction was never right, so at its times the
    memory reads as corrected. Versions folded in from other memories by a merge are
    not this memory's past and are skipped. Before its first version, the first.
    """
    states = [v for v in memory.history if v.source_id is None]
    states.append(Version(memory.text, memory.kind, memory.tags, memory.importance,
                          memory.updated_at, reason=""))
    for n in range(len(states) - 2, -1, -1):  # a correction reaches back over what it fixed
        if states[n].reason == CORRECTED:
            later = states[n + 1]
            states[n] = replace(states[n], text=later.text, kind=later.kind, tags=later.tags,
                                importance=later.importance)
    chosen = next((v for v in reversed(states) if v.updated_at <= moment), states[0])
    if chosen is states[-1]:
        return memory
    return replace(memory, text=chosen.text, kind=chosen.kind, tags=list(chosen.tags),
                   importance=chosen.importance)


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
