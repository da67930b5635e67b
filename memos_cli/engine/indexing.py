"""The profile's keyword index kept in step with its rows: loaded, rebuilt, saved.

The index (``keyword.KeywordIndex``) is a cache of every memory's words, sealed
on disk; writes update it inside their journal, and an index that does not cover
exactly the stored memories is rebuilt from them.
"""

from __future__ import annotations

from memos_cli.search import keyword
from memos_cli.search.keyword import Entry, KeywordIndex, tokenize
from memos_cli.core.memory import Memory
from memos_cli.engine.state import ProfileState


def keyword_index(s: ProfileState) -> KeywordIndex:
    """The profile's keyword index: loaded, or rebuilt if missing or out of step."""
    if s.keywords is None:
        assert s.codec is not None
        index = load_keywords(s, take=True)
        if index is None or not _index_matches(s, index):
            # Storage order is insertion order, which threads need.
            memories = [m for _row, m in s.open_rows(s.codec, s.store.scan())]
            index = KeywordIndex([entry(m) for m in memories])
        s.keywords = index
        if index.needs_save:  # rebuilt, or read from an older format: written now
            save_keywords(s)
    return s.keywords


def load_keywords(s: ProfileState, take: bool = False) -> KeywordIndex | None:
    """The saved keyword index, or None. Unsealing it grows with the store, so one read
    before the lock (``recall.query_vector``) serves the locked use that follows
    (``take``), unless a write replaced the file in between: files are replaced whole,
    never changed in place, so a new file has a new identity."""
    path = s.paths.keyword_file(s.profile)
    identity = keyword.identity(path)
    if identity is None:
        return None
    ahead, s.read_ahead = s.read_ahead, None
    if ahead is not None and ahead[0] == identity:
        index: KeywordIndex | None = ahead[1]
    else:
        index = KeywordIndex.load(path, s.unlocked_keys(), s.keyword_context)
    if index is not None and not take:
        s.read_ahead = (identity, index)
    return index


def _index_matches(s: ProfileState, index: KeywordIndex) -> bool:
    """Whether a saved index covers exactly the stored memories. On a server, other
    machines write too, so the ids themselves are compared, not only the count."""
    if len(index) != s.store.count():
        return False
    if s.store.remote is None:
        return True
    return {e.id for e in index.entries} == set(s.store.all_ids())


def save_keywords(s: ProfileState, index: KeywordIndex | None = None) -> None:
    index = index or s.keywords
    if index is not None:
        index.save(s.paths.keyword_file(s.profile), s.unlocked_keys(), s.keyword_context)


def appendable(s: ProfileState, adding: int) -> KeywordIndex | None:
    """The saved keyword index opened only to add to (``KeywordIndex.for_append``), if it
    covers the stored memories (a server's: never, others write there too)."""
    if s.store.remote is not None:
        return None
    index = KeywordIndex.for_append(s.paths.keyword_file(s.profile), s.unlocked_keys(),
                                    s.keyword_context, adding)
    return index if index is not None and _index_matches(s, index) else None


def entry(memory: Memory) -> Entry:
    # Memories recorded for the same moment (one session, one batch) are a thread.
    return Entry(memory.id, memory.occurred_at or memory.created_at, tokenize(memory.text))
