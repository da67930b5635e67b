"""Reading a profile without recall: every memory, one by id, the audit trail, stats."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from memos_cli.core.audit import Event
from memos_cli.core.errors import NotFoundError, UsageError
from memos_cli.core.memory import ID_HEX, Memory
from memos_cli.engine.indexing import load_keywords
from memos_cli.engine.opening import session
from memos_cli.engine.state import ProfileState
from memos_cli.core.timeparse import from_iso

MIN_PREFIX = 4


def all_memories(s: ProfileState) -> list[Memory]:
    """Every memory that opens, oldest first (see MemoryEngine.all_memories)."""
    with session(s, write=False) as codec:
        if codec is None:
            return []
        memories = [m for _row, m in s.open_rows(codec, s.store.scan())]
        if s.store.remote is None:  # (other machines write a server's rows unseen)
            s.listing.rebuild(s.unlocked_keys(), s.generation, memories, s.text_tag)
    memories.sort(key=lambda m: m.created_at)
    return memories


def keep_warm(s: ProfileState) -> None:
    """Read what the next command would otherwise read itself: the keyword index (read
    ahead) and, if current, the list index with its text tags (which spare a remember
    Chroma's lookup by metadata). For a long-lived process that holds the key, between
    commands. Only files replaced atomically are read, without the store lock (a
    command waiting for it is not kept waiting); the next command's session checks
    under the lock that what was read is still current, as it does for any cache."""
    if s.unlocked is None or s.store.remote is not None:
        return  # (unlocking may ask for a passphrase: never here)
    s.refresh_if_stale()
    if s.keywords is None and s.read_ahead is None:
        load_keywords(s)
    s.listing.current(s.unlocked_keys(), s.generation)
    s.listing.tagged(s.generation)


def show(s: ProfileState, ref: str) -> Memory:
    with session(s, write=False) as codec:
        if codec is None:
            raise NotFoundError(f"no memory matches {ref!r}")
        return s.usage.apply(s.unlocked_keys(), codec.open(s.store.get([resolve(s, ref)])[0]))


def lookup(s: ProfileState, refs: Sequence[str]) -> tuple[list[Memory], list[str]]:
    """The memories ``refs`` name, and the ids among them that are damaged (unreadable),
    which can still be forgotten by id."""
    with session(s, write=False) as codec:
        if codec is None:
            raise NotFoundError(f"no memory matches {refs[0]!r}")
        ids = list(dict.fromkeys(resolve(s, ref) for ref in refs))
        opened = {row.id: m for row, m in s.open_rows(codec, s.store.get(ids))}
    return [opened[i] for i in ids if i in opened], [i for i in ids if i not in opened]


def resolve(s: ProfileState, ref: str) -> str:
    """The one stored id that ``ref`` (an id or a prefix of one) names."""
    ref = ref.strip().lower()
    if len(ref) < MIN_PREFIX:
        raise UsageError(f"an id prefix needs at least {MIN_PREFIX} characters: {ref!r}")
    if len(ref) == ID_HEX and s.store.get([ref]):
        return ref  # a whole id is looked up, not searched for among every id
    rows = None if s.store.remote else s.listing.current(s.unlocked_keys(), s.generation)
    listed = [i for i in rows.ids if i.startswith(ref)] if rows is not None else []
    # (the list index leaves out memories that do not open: those are searched for)
    matches = listed or [i for i in s.store.all_ids() if i.startswith(ref)]
    if not matches:
        raise NotFoundError(f"no memory matches {ref!r}")
    if len(matches) > 1:
        raise NotFoundError(f"{ref!r} is ambiguous: it matches {len(matches)} memories")
    return matches[0]


def audit(s: ProfileState, since: datetime | None = None) -> list[Event]:
    """Every recorded change, oldest first."""
    with session(s, write=False) as codec:
        if codec is None:
            return []
        events = s.audit_log.read(s.unlocked_keys())
    return [e for e in events if since is None or from_iso(e.at) >= since]


def stats(s: ProfileState) -> dict[str, Any]:
    memories = all_memories(s)
    def count_by(field: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in memories:
            counts[getattr(m, field)] = counts.get(getattr(m, field), 0) + 1
        return counts

    info: dict[str, Any] = {
        "profile": s.profile, "memories": len(memories), "by_kind": count_by("kind"),
        "by_status": count_by("status"), "by_tier": count_by("tier"),
        "damaged": len(s.damaged),
        "bytes_on_disk": _tree_bytes(s.paths.data_dir),
        "data_dir": str(s.paths.data_dir),
    }
    with session(s, write=False) as codec:
        meta = s.store.meta() if codec is not None else {}
    info["embedding_model"] = meta.get("embed_model") or s.configured_model()
    info["embedding_dim"] = meta.get("embed_dim")
    info["key_mode"] = s.keys.status()["mode"] if s.keys.exists() else None
    return info


def _tree_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
