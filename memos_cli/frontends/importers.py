"""Importing the memory people already have: ChatGPT and Claude exports, Markdown notes.

Parsing is pure: each parser turns a file or folder into ``NewMemory`` items, or
raises ``BadInputError`` naming the file and the place, before anything is stored.
Conversations become dated episodes (one per user message and the replies to it);
without a model, what the user stated about themselves becomes a fact, by the same
rule ``memos chat`` uses offline. ``store`` adds items in batches, each committed on
its own, skipping exact texts already stored: importing twice adds nothing, and an
interrupted import picks up where it stopped.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from memos_cli.assistant.chat import offline_memory
from memos_cli.engine import NewMemory
from memos_cli.core.errors import BadInputError, UsageError
from memos_cli.core.timeparse import from_iso, parse_when

if TYPE_CHECKING:
    from memos_cli.engine import MemoryEngine

FORMATS = ("chatgpt", "claude", "markdown")
STATEMENT_MAX_CHARS = 280  # longer first-person messages are requests and pastes, not facts
BATCH = 64  # memories per committed write: what an interruption can cost
MARKDOWN_SUFFIXES = (".md", ".markdown")


@dataclass
class Exchange:
    """One user message and the assistant's reply to it, from an exported conversation."""

    user: str
    answer: str
    when: datetime | None
    ref: str  # stable: "<format>:<conversation id>/<message id>"


@dataclass
class Parsed:
    items: list[NewMemory] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    conversations: int = 0
    files: int = 0

    def counts(self) -> dict[str, int]:
        kinds: dict[str, int] = {}
        for item in self.items:
            kinds[item.kind] = kinds.get(item.kind, 0) + 1
        return {"conversations": self.conversations, "files": self.files,
                "memories": len(self.items), **kinds}


def parse(fmt: str, path: Path, *, statements: bool = True) -> Parsed:
    """Parse ``path`` in format ``fmt``; ``statements``: apply the offline fact rule."""
    if check_format(fmt) == "markdown":
        return parse_markdown(path)
    name, text = read_conversations(path)
    data = _load_json(text, name)
    if not isinstance(data, list):
        raise BadInputError(f"{name}: expected a list of conversations")
    convert = _chatgpt_conversation if fmt == "chatgpt" else _claude_conversation
    parsed = Parsed(conversations=len(data), files=1)
    for number, conversation in enumerate(data, start=1):
        where = f"{name}: conversation #{number}"
        if not isinstance(conversation, dict):
            raise BadInputError(f"{where}: expected a JSON object")
        parsed.exchanges += convert(conversation, where)
    parsed.items = conversation_items(fmt, parsed.exchanges, statements)
    return parsed


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise UsageError(f"unknown import format {fmt!r}: use one of {', '.join(FORMATS)}")
    return fmt


# --- conversations -----------------------------------------------------------------------

def read_conversations(path: Path) -> tuple[str, str]:
    """(name for messages, text) of ``conversations.json``: the file, or inside a .zip."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == "conversations.json"]
                if not names:
                    raise BadInputError(f"{path}: no conversations.json in this zip")
                member = min(names, key=len)  # the top-level one, if several
                return f"{path}:{member}", archive.read(member).decode("utf-8")
        return str(path), path.read_text("utf-8")
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise BadInputError(f"cannot read {path}: {exc}") from None


def _load_json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{name} line {exc.lineno} column {exc.colno}: invalid JSON "
                            f"({exc.msg})") from None


def _need(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise BadInputError(f"{where}: missing or invalid {key!r}")
    return value


def _chatgpt_conversation(conv: dict[str, Any], where: str) -> list[Exchange]:
    """The conversation's actual branch: from ``current_node`` up the parents, reversed."""
    mapping = _need(conv, "mapping", dict, where)
    node_id = _need(conv, "current_node", str, where)
    conv_id = str(conv.get("conversation_id") or conv.get("id") or node_id)
    started = _epoch(conv.get("create_time"), where)
    turns: list[tuple[str, str, datetime | None, str]] = []
    seen: set[str] = set()
    while node_id is not None:
        node = mapping.get(node_id)
        if not isinstance(node, dict) or node_id in seen:
            raise BadInputError(f"{where}: node {node_id!r} is missing or loops")
        seen.add(node_id)
        message = node.get("message")
        if isinstance(message, dict):
            turn = _chatgpt_turn(message, f"{where}, message {node_id}")
            if turn is not None:
                turns.append((*turn, node_id))
        node_id = node.get("parent")
    turns.reverse()
    return _exchanges("chatgpt", conv_id, turns, started)


def _chatgpt_turn(message: dict[str, Any], where: str) -> tuple[str, str, datetime | None] | None:
    author = _need(message, "author", dict, where)
    role = _need(author, "role", str, where)
    content = _need(message, "content", dict, where)
    hidden = (message.get("metadata") or {}).get("is_visually_hidden_from_conversation")
    if role not in ("user", "assistant") or hidden:
        return None
    parts = content.get("parts") or []
    if not isinstance(parts, list):
        raise BadInputError(f"{where}: invalid 'content.parts'")
    text = "\n".join(p for p in parts if isinstance(p, str)).strip()  # images etc. are dicts
    return (role, text, _epoch(message.get("create_time"), where)) if text else None


def _claude_conversation(conv: dict[str, Any], where: str) -> list[Exchange]:
    messages = _need(conv, "chat_messages", list, where)
    conv_id = str(conv.get("uuid") or where)
    started = _iso(conv.get("created_at"), where)
    turns: list[tuple[str, str, datetime | None, str]] = []
    for number, message in enumerate(messages, start=1):
        at = f"{where}, message #{number}"
        if not isinstance(message, dict):
            raise BadInputError(f"{at}: expected a JSON object")
        sender = _need(message, "sender", str, at)
        text = message.get("text") or "\n".join(
            c.get("text", "") for c in message.get("content") or []
            if isinstance(c, dict) and c.get("type") == "text")
        if not isinstance(text, str):
            raise BadInputError(f"{at}: invalid 'text'")
        role = {"human": "user", "assistant": "assistant"}.get(sender)
        if role and text.strip():
            turns.append((role, text.strip(), _iso(message.get("created_at"), at),
                          str(message.get("uuid") or number)))
    return _exchanges("claude", conv_id, turns, started)


def _exchanges(fmt: str, conv_id: str, turns: Sequence[tuple[str, str, datetime | None, str]],
               started: datetime | None) -> list[Exchange]:
    """Each user message with the assistant messages that follow it."""
    out: list[Exchange] = []
    for role, text, when, message_id in turns:
        if role == "user":
            out.append(Exchange(text, "", when or started, f"{fmt}:{conv_id}/{message_id}"))
        elif out:
            out[-1].answer = f"{out[-1].answer}\n{text}".strip()
    return out


def _epoch(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise BadInputError(f"{where}: invalid create_time {value!r}")
    return datetime.fromtimestamp(value, timezone.utc)


def _iso(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        return from_iso(str(value))
    except ValueError:
        raise BadInputError(f"{where}: invalid created_at {value!r}") from None


def conversation_items(fmt: str, exchanges: Sequence[Exchange], statements: bool
                       ) -> list[NewMemory]:
    """Episodes (as ``memos chat`` stores them) and, with ``statements``, stated facts."""
    items: list[NewMemory] = []
    for ex in exchanges:
        text = f"User: {ex.user}\nAssistant: {ex.answer}" if ex.answer else f"User: {ex.user}"
        items.append(NewMemory(text, kind="episode", tags=[fmt], occurred_at=ex.when,
                               source="import", source_ref=ex.ref))
        stated = offline_memory(ex.user) if statements else None
        if stated is not None and len(stated[0]) <= STATEMENT_MAX_CHARS and "\n" not in stated[0]:
            items.append(NewMemory(stated[0], kind=stated[1], tags=[fmt], occurred_at=ex.when,
                                   source="import", source_ref=ex.ref))
    return items


# --- markdown notes ------------------------------------------------------------------------

_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?:\[[ xX]\]\s+)?")
_HASHTAG = re.compile(r"(?<![\w&/#])#([A-Za-z][\w/-]*)")
_HEADING = re.compile(r"^#{1,6}\s")
_FENCE = re.compile(r"^\s*(```|~~~)")


def parse_markdown(root: Path) -> Parsed:
    """One memory per paragraph or list item of each note under ``root`` (a folder or file)."""
    if not root.exists():
        raise BadInputError(f"cannot read {root}: no such file or folder")
    files = [root] if root.is_file() else sorted(
        p for p in root.rglob("*") if p.suffix.lower() in MARKDOWN_SUFFIXES and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts))
    parsed = Parsed(files=len(files))
    for path in files:
        rel = path.name if path == root else path.relative_to(root).as_posix()
        parsed.items += _note_items(path, rel)
    return parsed


def _note_items(path: Path, rel: str) -> list[NewMemory]:
    try:
        text = path.read_text("utf-8")
        mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read {path}: {exc}") from None
    meta, body = _front_matter(text, str(path))
    when = _front_date(meta.get("date"), f"{path} line {meta.get('date_line', 1)}") or mtime
    folder = [rel.rsplit("/", 2)[-2]] if "/" in rel else []
    base_tags = _list(meta.get("tags")) + folder
    items = []
    for chunk in _chunks(body.splitlines()):
        tags = base_tags + _HASHTAG.findall(chunk)
        items.append(NewMemory(chunk, kind="note", tags=tags, occurred_at=when, source="import",
                               source_ref=f"markdown:{rel}"))
    return items


def _front_matter(text: str, name: str) -> tuple[dict[str, Any], str]:
    """(fields, body) of a YAML-like front matter block; only the simple forms
    notes use: ``key: value``, ``key: [a, b]`` and ``key:`` followed by ``- item`` lines."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}, text
    try:
        end = next(n for n in range(1, len(lines)) if lines[n].strip() in ("---", "..."))
    except StopIteration:
        raise BadInputError(f"{name} line 1: front matter is not closed with '---'") from None
    meta: dict[str, Any] = {}
    key = None
    for number, line in enumerate(lines[1:end], start=2):
        item = re.match(r"^\s+-\s*(.*)$", line)
        if item and key is not None:
            meta.setdefault(key, [])
            if isinstance(meta[key], list):
                meta[key].append(item.group(1).strip().strip("'\""))
            continue
        pair = re.match(r"^([A-Za-z_][\w-]*)\s*:\s*(.*)$", line)
        if pair:
            key, value = pair.group(1).lower(), pair.group(2).strip()
            if value:
                meta[key] = value
            meta[f"{key}_line"] = number
    return meta, "\n".join(lines[end + 1:])


def _front_date(value: Any, where: str) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return parse_when(value.strip("'\""))
    except UsageError:
        try:
            return from_iso(value.strip("'\""))
        except ValueError:
            raise BadInputError(f"{where}: invalid date {value!r}") from None


def _list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v).lstrip("#") for v in value if str(v).strip()]
    if isinstance(value, str):
        inner = value.strip().strip("[]")
        return [t.strip().strip("'\"").lstrip("#") for t in re.split(r"[,\s]+", inner)
                if t.strip().strip("'\"")]
    return []


def _chunks(lines: Sequence[str]) -> Iterator[str]:
    """Paragraphs and list items, without headings; a fenced code block stays whole."""
    current: list[str] = []
    fenced = False

    def flush() -> Iterator[str]:
        text = "\n".join(current).strip()
        current.clear()
        if text:
            yield text

    for line in lines:
        if _FENCE.match(line):
            fenced = not fenced
            current.append(line)
            continue
        if fenced:
            current.append(line)
        elif not line.strip() or _HEADING.match(line):
            yield from flush()
        elif _BULLET.match(line):
            yield from flush()
            current.append(_BULLET.sub("", line, count=1))
        else:
            current.append(line.strip())
    yield from flush()


# --- storing -------------------------------------------------------------------------------

@dataclass
class Stored:
    added: int = 0
    skipped: int = 0
    new: list[NewMemory] = field(default_factory=list)


def store(engine: MemoryEngine, items: Sequence[NewMemory],
          progress: Callable[[int, int], None] | None = None, batch: int = BATCH) -> Stored:
    """Add ``items`` in committed batches, skipping texts already stored (or repeated)."""
    present = {m.text for m in engine.list(include_inactive=True)}
    todo: list[NewMemory] = []
    for item in items:
        text = item.text.strip()
        if text and text not in present:
            present.add(text)
            todo.append(item)
    result = Stored(skipped=len(items) - len(todo))
    for start in range(0, len(todo), batch):
        for stored_item, outcome in zip(todo[start:start + batch],
                                        engine.remember_many(todo[start:start + batch])):
            if outcome.created:
                result.added += 1
                result.new.append(stored_item)
            else:
                result.skipped += 1
        if progress is not None:
            progress(min(start + batch, len(todo)), len(todo))
    return result
