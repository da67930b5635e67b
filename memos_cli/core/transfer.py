"""Export and import formats: memos' own JSONL and JSON (lossless), and Markdown (to read).

An export holds plaintext by nature; the CLI warns about that. Parsing an import
validates every record before anything is written, and every error names the line.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from memos_cli.core.errors import BadInputError, MemosError, VersionError
from memos_cli.core.memory import Memory, needed_version
from memos_cli.core.timeparse import now_utc, to_iso

EXPORT_VERSION = 2  # the newest this memos reads; 2 added the source "mcp"
FORMATS = ("jsonl", "json", "markdown")


def export_text(memories: Sequence[Memory], fmt: str) -> str:
    """Render memories (already in a stable order) in one of ``FORMATS``."""
    # The oldest version that holds every memory, so an older memos reads what it can.
    version = max([1, *map(needed_version, memories)])
    if fmt == "jsonl":
        lines = [json.dumps({"memos_export": version}, separators=(",", ":"))]
        lines += [json.dumps(m.to_dict(), ensure_ascii=False, sort_keys=True) for m in memories]
        return "\n".join(lines) + "\n"
    if fmt == "json":
        doc = {"memos_export": version, "memories": [m.to_dict() for m in memories]}
        return json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    if fmt == "markdown":
        return _markdown(memories)
    raise BadInputError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")


def _markdown(memories: Sequence[Memory]) -> str:
    out = ["# memos export", ""]
    for m in memories:
        out.append(f"## {m.id[:8]} · {m.kind} · {m.created_at[:10]}")
        out.append("")
        out.append(m.text)
        details = [f"tags: {', '.join(m.tags)}" if m.tags else "",
                   f"occurred: {m.occurred_at}" if m.occurred_at else "",
                   f"status: {m.status}" if m.status != "active" else ""]
        if any(details):
            out += ["", "_" + "; ".join(d for d in details if d) + "_"]
        for old in m.history:
            out.append(f"\n> earlier ({old.updated_at[:10]}): {old.text}")
        out.append("")
    return "\n".join(out) + "\n"


def parse_import(text: str) -> list[Memory]:
    """Parse a JSONL or JSON export; raise ``BadInputError`` naming the first bad line."""
    if text.lstrip().startswith("{") and text.lstrip().split("\n", 1)[0].strip() == "{":
        return _parse_json_document(text)
    return _parse_jsonl(text.splitlines())


def _parse_jsonl(lines: Iterable[str]) -> list[Memory]:
    memories: list[Memory] = []
    now = to_iso(now_utc())
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        data = _load_line(line, number)
        if "memos_export" in data:
            _check_version(data["memos_export"], f"line {number}")
            continue
        memories.append(_memory(data, f"line {number}", now))
    _check_unique(memories)
    return memories


def _parse_json_document(text: str) -> list[Memory]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("memories"), list):
        raise BadInputError("not a memos export: expected an object with a 'memories' list")
    _check_version(doc.get("memos_export"), "the header")
    now = to_iso(now_utc())
    memories = [_memory(item, f"memory #{n}", now) for n, item in enumerate(doc["memories"], 1)]
    _check_unique(memories)
    return memories


def _load_line(line: str, number: int) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"line {number}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise BadInputError(f"line {number}: expected a JSON object")
    return data


def _check_version(value: Any, where: str) -> None:
    if not isinstance(value, int):
        raise BadInputError(f"{where}: memos_export must be a number")
    if value > EXPORT_VERSION:
        raise VersionError(f"{where}: this export was written by a later memos; upgrade memos")


def _memory(data: Any, where: str, now: str) -> Memory:
    if not isinstance(data, dict):
        raise BadInputError(f"{where}: expected a JSON object")
    # A hand-written line may leave out its times: it is recorded as of the import.
    data = {"created_at": now, **data}
    data.setdefault("updated_at", data["created_at"])
    try:
        return Memory.from_dict(data)
    except MemosError as exc:
        raise BadInputError(f"{where}: {exc}") from None


def _check_unique(memories: Sequence[Memory]) -> None:
    seen: set[str] = set()
    for m in memories:
        if m.id in seen:
            raise BadInputError(f"the id {m.id} appears twice")
        seen.add(m.id)
