"""The memory engine: remember, recall, list, show, update, forget, import, reindex.

``MemoryEngine`` is the library's front door; the CLI, chat and the benchmarks all
go through it. It joins the key store (``keys``), the sealed row codec (``records``)
and the Chroma layer (``store``), and it is the only place that holds plaintext.
Every operation runs under the store lock; writes are journalled so a killed
process leaves the store as it was before, never half-written.

The engine is a facade: its jobs live in modules named for them, each a set of
functions over the profile's open state (``state.ProfileState``): opening and
recovery (``opening``, ``rotation``), writing (``writing``), forgetting
(``forgetting``), the recall loop (``recall``), the keyword index's upkeep
(``indexing``), reading and stats (``reading``), key administration (``keyadmin``),
reindexing (``reindexing``), and the unit of work (``unit``). Consolidation and
backups live in this package too and work through the unit of work.

This package never imports the assistant, the front ends, the agent or the command
line (import-linter checks it), and nothing outside it uses ``ProfileState``.
"""

from __future__ import annotations

import builtins
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Callable, Generic, Iterator, Sequence, TypeVar, overload

from memos_cli.engine import forgetting, keyadmin, reading, recall, reindexing, writing
from memos_cli.core.audit import AuditLog, Event
from memos_cli.core.listing import ListIndex
from memos_cli.core.keys import KeyStore, PassphraseSource, Unlocked
from memos_cli.core.memory import Memory
from memos_cli.engine.opening import locked, session
from memos_cli.core.passphrase import profile_passphrase
from memos_cli.core.paths import Paths
from memos_cli.engine.recall import Filter
from memos_cli.search.retrieval import Hit
from memos_cli.engine.state import Progress, ProfileState
from memos_cli.core.store import ChromaStore
from memos_cli.engine.unit import UnitOfWork
from memos_cli.core.usage import UsageLog
from memos_cli.engine.writing import ImportResult, NewMemory, RememberResult

__all__ = ["Filter", "Hit", "ImportResult", "MemoryEngine", "NewMemory", "Progress",
           "RememberResult", "UnitOfWork"]

T = TypeVar("T")


class _Shared(Generic[T]):
    """An engine attribute that lives on its profile state, where the jobs see it."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, engine: None, owner: type) -> "_Shared[T]": ...
    @overload
    def __get__(self, engine: "MemoryEngine", owner: type | None = None) -> T: ...
    def __get__(self, engine: "MemoryEngine | None", owner: type | None = None) -> Any:
        # On the class itself (help(), introspection) the descriptor stands for itself.
        return self if engine is None else getattr(engine._state, self.name)

    def __set__(self, engine: "MemoryEngine", value: T) -> None:
        setattr(engine._state, self.name, value)


class MemoryEngine:
    """One profile's memories, encrypted at rest, found by meaning."""

    paths: _Shared[Paths] = _Shared()
    profile: _Shared[str] = _Shared()
    notices: _Shared[list[str]] = _Shared()
    keys: _Shared[KeyStore] = _Shared()
    store: _Shared[ChromaStore] = _Shared()
    recall_floor: _Shared[float] = _Shared()
    damaged: _Shared[list[str]] = _Shared()  # ids whose ciphertext failed its integrity check
    # What this engine's last add left the counter at (see consolidation.due).
    new_since_consolidation: _Shared[int | None] = _Shared()
    cause: _Shared[str] = _Shared()  # what the audit trail names as the cause of changes
    audit_log: _Shared[AuditLog] = _Shared()
    usage: _Shared[UsageLog] = _Shared()
    listing: _Shared[ListIndex] = _Shared()  # id, time, status, tier, kind: what list -n reads

    def __init__(self, profile: str | None = None, *, paths: Paths | None = None,
                 embedder: Any = None, passphrase: PassphraseSource = profile_passphrase,
                 new_passphrase: PassphraseSource | None = None,
                 use_keyring: bool | None = None,
                 notice: Callable[[str], None] | None = None,
                 store: str | None = None) -> None:
        self._state = ProfileState(profile, paths=paths, embedder=embedder,
                                   passphrase=passphrase, new_passphrase=new_passphrase,
                                   use_keyring=use_keyring, notice=notice, store=store)

    # --- plumbing ------------------------------------------------------------------

    @property
    def embedder(self) -> Any:
        return self._state.embedder

    def exists(self) -> bool:
        """Whether this profile has a key, i.e. was ever written to."""
        return self.keys.exists()

    # --- the unit of work: what other modules (consolidation, backup, benchmarks) use --

    @contextmanager
    def unit(self, write: bool, create: bool | None = None) -> Iterator[UnitOfWork | None]:
        """The profile opened, unlocked and locked for one batch of work; None when it
        has no store (and ``create``, default ``write``, is false). See ``UnitOfWork``."""
        with session(self._state, write, create) as codec:
            if write and codec is not None:
                # Its writes change rows directly: the list index is rebuilt when next needed.
                self.listing.drop()
            yield None if codec is None else UnitOfWork(self._state, codec)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The store lock, with whatever an interrupted command left finished or undone
        first (the key unlocked when there is one)."""
        with locked(self._state):
            yield

    def unlock(self) -> Unlocked | None:
        """Unlock the profile's key if it has one and it is not unlocked yet (this may
        ask for the passphrase); None for a profile with no key."""
        return self._state.unlock()

    @property
    def holds_key(self) -> bool:
        """Whether this engine holds the profile's unlocked key (the agent reports it)."""
        return self._state.unlocked is not None

    def adopt_keys(self, unlocked: Unlocked | None) -> None:
        """Use ``unlocked`` from now on (a restore brought another key), dropping every
        cache made under the previous one."""
        self._state.adopt_keys(unlocked)

    def drop_caches(self) -> None:
        """Forget the codec and keyword index (the files under them were replaced)."""
        self._state.drop_caches()

    def notice(self, text: str) -> None:
        """Tell the user something on the side (stderr in the CLI, ``notices`` otherwise)."""
        self._state.notice(text)

    # --- moving the key between machines ---------------------------------------------------

    def export_key(self, passphrase: str) -> dict[str, Any]:
        """The profile's data key wrapped under ``passphrase``, for ``import_key`` elsewhere."""
        return keyadmin.export_key(self._state, passphrase)

    def import_key(self, exported: dict[str, Any], passphrase: str) -> None:
        """Join a store made elsewhere (a shared Chroma server) by adopting its key.

        A key this machine already has is replaced only if no store opens with it (an
        earlier ``config set`` of a secret made it); its vault is re-sealed, not lost.
        """
        keyadmin.import_key(self._state, exported, passphrase)

    # --- secrets (API keys) -----------------------------------------------------------------

    def secret(self, name: str) -> str | None:
        """A secret from the profile's vault (None if unset or no profile yet)."""
        return self._state.secret(name)

    def set_secret(self, name: str, value: str | None) -> None:
        """Store (or with None, remove) a secret in the vault, sealed.

        Only the key is needed, not the store: a server's token is set before memos
        can reach the server.
        """
        keyadmin.set_secret(self._state, name, value)

    # --- the audit trail ---------------------------------------------------------------------

    def audit(self, since: datetime | None = None) -> list[Event]:
        """Every recorded change, oldest first (``audit_log.damaged`` counts lines that fail their check)."""
        return reading.audit(self._state, since)

    # --- writing -------------------------------------------------------------------------

    def remember(self, new: NewMemory) -> RememberResult:
        return self.remember_many([new])[0]

    def remember_many(self, items: Sequence[NewMemory]) -> list[RememberResult]:
        """Store several memories at once; exact repeats of stored texts are not added."""
        return writing.remember_many(self._state, items)

    def update(self, ref: str, text: str | None = None, *, kind: str | None = None,
               tags: list[str] | None = None, importance: float | None = None,
               reason: str = "update") -> Memory:
        """Change a memory; its previous state goes into its history.

        By default the change happened in the world now: ``recall --at`` an earlier
        time still reads the old text. With ``reason=CORRECTED`` the old text was a
        mistake: at every time the memory reads as corrected (the old text stays in
        its history, marked "corrected").
        """
        return writing.update(self._state, ref, text, kind=kind, tags=tags,
                              importance=importance, reason=reason)

    def invalidate(self, ref: str, *, reason: str = "invalidated") -> Memory:
        """Mark a memory no longer valid from now on; it stays, with its history.

        Recall and list skip invalid memories unless asked; only ``forget`` deletes.
        """
        return writing.invalidate(self._state, ref, reason=reason)

    def supersede(self, ref: str, new: NewMemory) -> tuple[Memory, Memory]:
        """A fact changed: the old memory stops being valid now, the new one starts now.

        Returns (old, new); the new memory records the old one in ``derived_from``.
        """
        return writing.supersede(self._state, ref, new)

    def forget(self, ids: Sequence[str], *, cascade: bool = True) -> int:
        """Delete memories for good: no text, vector or old version stays on disk.

        Forgetting follows provenance: a memory consolidation made from a forgotten
        one (a summary) is forgotten too (``cascade``); any other memory that holds
        a forgotten one's text in its history (a merge) is rebuilt without it.
        """
        return forgetting.forget(self._state, ids, cascade=cascade)

    def forget_preview(self, ids: Sequence[str], *, cascade: bool = True
                       ) -> tuple[list[Memory], list[Memory]]:
        """(memories that forgetting ``ids`` deletes, memories it rebuilds), changing nothing."""
        return forgetting.forget_preview(self._state, ids, cascade=cascade)

    def prune(self) -> int:
        """Delete archived memories for good (what they were summarised into stays)."""
        archived = [m.id for m in self.list(include_inactive=True) if m.status == "archived"]
        return self.forget(archived, cascade=False) if archived else 0

    def forget_all(self) -> int:
        """Destroy the profile: every memory, the collection and the keys.

        Needs no key: it is the way out of a lost passphrase. The count is of rows,
        whether or not they could be opened.
        """
        return forgetting.forget_all(self._state)

    def import_memories(self, memories: Sequence[Memory],
                        progress: Progress | None = None) -> ImportResult:
        """Add exported memories as they were (ids, dates, history); all or nothing.

        A memory whose id or exact text is already stored is skipped, so importing
        the same file twice adds nothing the second time.
        """
        return writing.import_memories(self._state, memories, progress)

    # --- reading -------------------------------------------------------------------------

    def recall(self, query: str, limit: int = 10, *, where: Filter | None = None,
               record_access: bool = True, floor: float | None = None,
               also: Sequence[str] = (), **filters: Any) -> list[Hit]:
        """The memories that best answer ``query``, best first.

        Two retrievers each propose candidates: the vector index (meaning) and BM25
        over neighbour windows (words). Their scores are z-normalised over the
        candidates and added. See docs/benchmarks.md for what each part is worth.
        ``also``: other wordings of what an answer may say (a chat model's, see
        ``assistant.expansion``): searched with too, they reorder the candidates;
        whether a memory clears the floor stays the query's own evidence.
        """
        return recall.recall(self._state, query, limit, where=where,
                             record_access=record_access, floor=floor, also=also, **filters)

    def list(self, *, limit: int | None = None, where: Filter | None = None,
             **filters: Any) -> list[Memory]:
        """Memories, newest first."""
        keep = where or Filter(**filters)
        if limit:
            newest = recall.list_newest(self._state, limit, keep)
            if newest is not None:
                return newest
        memories = [shown for shown in map(keep.shown, reversed(self.all_memories()))
                    if shown is not None]
        return memories[:limit] if limit else memories

    def keep_warm(self) -> None:
        """Between commands of a long-lived process (the agent): read the keyword and list
        indexes ahead, so the next command does not (see ``reading.keep_warm``)."""
        reading.keep_warm(self._state)

    def all_memories(self) -> builtins.list[Memory]:
        """Every memory that opens, oldest first; damaged ones are noted in ``damaged``.

        Memories made in the same second keep the order they were stored in
        (Chroma returns rows in insertion order and the sort is stable).
        """
        return reading.all_memories(self._state)

    def show(self, ref: str) -> Memory:
        return reading.show(self._state, ref)

    def lookup(self, refs: Sequence[str]) -> tuple[builtins.list[Memory], builtins.list[str]]:
        """The memories ``refs`` name, and the ids among them that are damaged (unreadable),
        which can still be forgotten by id."""
        return reading.lookup(self._state, refs)

    def stats(self) -> dict[str, Any]:
        return reading.stats(self._state)

    # --- maintenance ---------------------------------------------------------------------

    def reindex(self, progress: Progress | None = None) -> int:
        """Re-embed every memory with the configured model into a fresh collection.

        The new collection is built beside the old one and swapped in at the end,
        so a crash at any point leaves one complete, consistent store.
        """
        return reindexing.reindex(self._state, progress)

    def change_passphrase(self, new_passphrase: str) -> None:
        """Re-wrap the data key under ``new_passphrase``, proven against the store first."""
        keyadmin.change_passphrase(self._state, new_passphrase)

    def rotate_key(self, progress: Progress | None = None) -> int:
        """Re-encrypt every memory under a new data key; resumable after a crash."""
        return keyadmin.rotate_key(self._state, progress)
