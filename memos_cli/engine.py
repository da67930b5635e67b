"""The memory engine: remember, recall, list, show, update, forget, import, reindex.

``MemoryEngine`` is the library's front door; the CLI, chat and the benchmarks all
go through it. It joins the key store (``keys``), the sealed row codec (``records``)
and the Chroma layer (``store``), and it is the only place that holds plaintext.
Every operation runs under the store lock; writes are journalled so a killed
process leaves the store as it was before, never half-written.
"""

from __future__ import annotations

import builtins
import json
import os
import secrets
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from memos_cli import crypto, retrieval
from memos_cli.atomic import write_atomic
from memos_cli.audit import AuditLog, Event
from memos_cli.config import EmbeddingSettings, embedding_settings, recall_floor, store_settings
from memos_cli.errors import (IntegrityError, NotFoundError, StoreMismatchError, UsageError,
                              VersionError, WrongKeyError)
from memos_cli.failpoint import failpoint
from memos_cli.keys import DataKey, KeyStore, PassphraseSource, Unlocked
from memos_cli.passphrase import profile_passphrase
from memos_cli.keyword import Entry, KeywordIndex, tokenize
from memos_cli.lock import store_lock
from memos_cli.lifecycle import initial_tier
from memos_cli.memory import (CORRECTED, TIERS, Memory, Version, as_of, check_kind, new_id,
                              normalise_tags)
from memos_cli.paths import Paths, resolve_paths, resolve_profile
from memos_cli.records import RecordCodec
from memos_cli.retrieval import (Candidate, Hit, crowded_by_episodes, facts_first, favour_period,
                                 happened_in, keyword_evidence, relevance, top, zscore)
from memos_cli.store import ChromaStore, Remote
from memos_cli.usage import UsageLog
from memos_cli.vault import Vault
from memos_cli.timeparse import from_iso, now_utc, query_period, to_iso

STORE_FORMAT = 1
CANDIDATES = 50  # from each retriever, before fusion (more when filters drop many)
Progress = Callable[[int, int], None]  # (done, total)
MIN_PREFIX = 4
JOIN_HINT = (": run 'memos key export' on a machine that opens the store and "
             "'memos key import FILE' here")


@dataclass
class RememberResult:
    memory: Memory
    created: bool  # False: the exact same text was already stored


@dataclass
class ImportResult:
    added: int = 0
    skipped: int = 0


@dataclass
class NewMemory:
    """What a caller supplies to remember one memory."""

    text: str
    kind: str = "note"
    tags: list[str] = field(default_factory=list)
    importance: float = 0.5
    occurred_at: datetime | None = None
    source: str = "cli"
    source_ref: str | None = None
    valid_from: datetime | None = None
    derived_from: list[str] = field(default_factory=list)
    tier: str | None = None  # None: where its kind starts (see lifecycle.initial_tier)


class MemoryEngine:
    """One profile's memories, encrypted at rest, found by meaning."""

    def __init__(self, profile: str | None = None, *, paths: Paths | None = None,
                 embedder: Any = None, passphrase: PassphraseSource = profile_passphrase,
                 new_passphrase: PassphraseSource | None = None,
                 use_keyring: bool | None = None,
                 notice: Callable[[str], None] | None = None,
                 store: str | None = None) -> None:
        self.paths = paths or resolve_paths()
        self.profile = resolve_profile(profile)
        self.notices: list[str] = []
        self._notice = notice or self.notices.append
        # ``passphrase`` unlocks; a new key is wrapped by ``new_passphrase`` (default: the
        # same source), or by the keyring or a key file when that gives none.
        self.keys = KeyStore(self.paths, self.profile, passphrase=passphrase,
                             new_passphrase=new_passphrase, use_keyring=use_keyring,
                             notice=self._notice)
        where = store_settings(self.paths, store)
        remote = Remote(where.url, where.token, where.ca) if where.url else None
        self.store = ChromaStore(self.paths.chroma_dir, self.profile, remote)
        self.recall_floor = recall_floor(self.paths)  # below it, a memory is not an answer
        self._embedder = embedder
        self._unlocked: Unlocked | None = None
        self._codec: RecordCodec | None = None
        self._keywords: KeywordIndex | None = None
        # The saved index as read before taking the lock, with the file's identity, for
        # the first locked use to take over if no write has replaced the file meanwhile.
        self._read_ahead: tuple[tuple[int, int, int], KeywordIndex] | None = None
        self._generation: str | None = None
        self.damaged: list[str] = []  # ids whose ciphertext failed its integrity check
        # What this engine's last add left the counter at (see consolidation.due).
        self.new_since_consolidation: int | None = None
        self.cause = "library"  # what the audit trail names as the cause of changes
        self.audit_log = AuditLog(self.paths.audit_file(self.profile), f"audit/{self.profile}")
        self.usage = UsageLog(self.paths.usage_file(self.profile), f"usage/{self.profile}")

    # --- plumbing ------------------------------------------------------------------

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            self._embedder = _shared_embedder(self._embedding_settings())
        return self._embedder

    def _embedding_settings(self) -> EmbeddingSettings:
        """The configured embedder; an endpoint's API key from the environment, else from
        the vault (``config set embedding.api_key``), else OPENAI_API_KEY."""
        settings = embedding_settings(self.paths)
        if settings.model.startswith("openai:") and not os.environ.get("MEMOS_EMBED_API_KEY"):
            stored = self.secret("embedding.api_key")
            if stored:
                settings = replace(settings, api_key=stored)
        return settings

    def exists(self) -> bool:
        """Whether this profile has a key, i.e. was ever written to."""
        return self.keys.exists()

    # --- the unit of work: what other modules (consolidation, backup, benchmarks) use --

    @contextmanager
    def unit(self, write: bool, create: bool | None = None) -> Iterator["UnitOfWork | None"]:
        """The profile opened, unlocked and locked for one batch of work; None when it
        has no store (and ``create``, default ``write``, is false). See ``UnitOfWork``."""
        with self._session(write, create) as codec:
            yield None if codec is None else UnitOfWork(self, codec)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The store lock, with whatever an interrupted command left finished or undone
        first (the key unlocked when there is one)."""
        with self._locked():
            yield

    def unlock(self) -> Unlocked | None:
        """Unlock the profile's key if it has one and it is not unlocked yet (this may
        ask for the passphrase); None for a profile with no key."""
        if self._unlocked is None and self.keys.exists():
            self._unlocked = self.keys.unlock()
        return self._unlocked

    def adopt_keys(self, unlocked: Unlocked | None) -> None:
        """Use ``unlocked`` from now on (a restore brought another key), dropping every
        cache made under the previous one."""
        self._unlocked = unlocked
        self.drop_caches()

    def drop_caches(self) -> None:
        """Forget the codec and keyword index (the files under them were replaced)."""
        self._codec = self._keywords = None

    def notice(self, text: str) -> None:
        """Tell the user something on the side (stderr in the CLI, ``notices`` otherwise)."""
        self._notice(text)

    @contextmanager
    def _session(self, write: bool, create: bool | None = None) -> Iterator[RecordCodec | None]:
        """Unlock, lock, open and repair the store; yields None for a profile with no store.

        ``create`` (default: ``write``) makes the key and store when there are none;
        ``write`` tells other processes afterwards that the store changed.
        """
        create = write if create is None else create
        with self._locked():
            if self._unlocked is None:
                self._refuse_foreign_store()
                if not create:
                    yield None
                    return
                self._unlocked = self.keys.create()
            codec = self._open_store(create=create)
            if codec is None:
                yield None
                return
            if write:
                # Before writing, not after: a write that committed must not then fail
                # (a full disk), and others cannot look before we release the lock.
                self._bump_generation()
            yield codec

    @contextmanager
    def _locked(self, unlock: bool = True) -> Iterator[None]:
        """The store lock, with whatever an interrupted command left finished or undone first.

        Every command that takes the lock comes through here, so none can act on a
        store that a killed consolidation, restore, reindex, write or rotation left
        half-done (a rotation that ran before a consolidation was undone lost every
        memory: the snapshot put back afterwards was sealed under the destroyed key).
        The order matters: whole-folder snapshots first, then the profile's key, then
        its rows. ``unlock=False`` (for ``forget --all``, which must destroy a profile
        it cannot open) does only what needs no key.
        """
        if unlock:
            self.unlock()  # may prompt: done before taking the lock
        self.store.preload()  # importing Chroma takes a second: not while others wait
        with store_lock(self.paths.lock_file):
            self._refresh_if_stale()
            self._recover_consolidation()
            self._recover_restore()
            if unlock and self.unlock() is not None:  # again: a finished restore changed it
                self._recover_store()
            yield

    def _recover_store(self) -> None:
        """Finish or undo an interrupted reindex, write or key rotation (needs the key)."""
        assert self._unlocked is not None
        self._load_store_token()
        self._recover_reindex()
        pending = self.paths.journal_file(self.profile).exists() or self._unlocked.next
        if pending and self.store.exists():
            self._check_store_key_only()
            self._recover_journal()
            if self._unlocked.next is not None:
                self._rotate_rows()
                self._codec = None

    def _create_key(self, check_store: bool = True) -> Unlocked:
        """A new key for a profile that has none, unless memories are stored without it."""
        if check_store:
            self._refuse_foreign_store()
        return self.keys.create()

    def _warm(self, dim: int) -> None:
        """Unlock, and derive the vector rotation for ``dim``, before taking the lock:
        a passphrase prompt and a QR decomposition are not for other processes to wait on."""
        if self.unlock() is not None:
            for key in (self._keys().current, self._keys().next):
                if key is not None:
                    key.rotation(dim)

    def _refuse_foreign_store(self) -> None:
        """A store with no key here is never opened or replaced by a new key: on a server it
        was made elsewhere (say how to join); locally its key file was lost or moved."""
        if not self.store.exists():
            return
        if self.store.remote is not None:
            raise WrongKeyError(f"profile {self.profile!r} on {self.store.remote.url} was made "
                                "with a key this machine does not have" + JOIN_HINT)
        raise WrongKeyError(f"profile {self.profile!r} has memories but its key file "
                            f"{self.keys.file} is missing: put it back (from a copy of "
                            f"{self.paths.keys_dir}), 'memos key import' an export of it, "
                            "'memos restore' a backup, or 'memos forget --all' to start afresh")

    def _open_store(self, create: bool) -> RecordCodec | None:
        """The codec for the store (made if ``create``); recovery already ran (``_locked``)."""
        assert self._unlocked is not None
        if self._codec is not None:
            return self._codec
        if not self.store.exists():
            if not create:
                return None
            self.store.create(self._store_meta(self._unlocked.current, self._embed_meta()))
        meta = self.store.meta()
        self._check_store(meta)
        self._codec = self._new_codec(meta)
        return self._codec

    def _new_codec(self, meta: dict[str, Any] | None = None) -> RecordCodec:
        assert self._unlocked is not None
        meta = self.store.meta() if meta is None else meta
        return RecordCodec(self._unlocked, vector_tags=bool(meta.get("vector_tags")))

    def _load_store_token(self) -> None:
        """A server's token from the vault, unless the environment gave one (needs the key)."""
        remote = self.store.remote
        if remote is not None and remote.token is None and self._unlocked is not None:
            remote.token = self._vault().read(self._keys()).get("store.token")

    def _check_store(self, meta: dict[str, Any]) -> None:
        assert self._unlocked is not None
        if int(meta.get("memos_format", 0)) > STORE_FORMAT:
            raise VersionError("this store was written by a later version of memos: upgrade memos")
        key = self._unlocked.by_id(str(meta.get("key_id")))
        if key is None:
            elsewhere = self.store.remote is not None  # e.g. rotated by another machine
            raise WrongKeyError("this store was made with another key than the one in "
                                f"{self.keys.file}" + (JOIN_HINT if elsewhere else ""))
        try:
            crypto.unseal(key.key, crypto.b64d(str(meta["check"])), "check/" + key.key_id)
        except (IntegrityError, KeyError):
            # The key named by the store unwrapped, so it is the right one: the check
            # value itself was altered.
            raise IntegrityError("the store's check value failed its integrity check: "
                                 "the store's metadata was altered") from None
        configured = self._configured_model()
        if meta.get("embed_model") != configured:
            raise StoreMismatchError(
                f"this store was built with the embedding model {meta.get('embed_model')!r} "
                f"but {configured!r} is configured: change it back, or run 'memos reindex'")

    def _configured_model(self) -> str:
        return self.embedder.model_id  # cheap: embedders load their model on first use

    def _embed_meta(self) -> dict[str, Any]:
        return {"embed_model": self.embedder.model_id, "embed_dim": int(self.embedder.dim or 0)}

    @staticmethod
    def _store_meta(key: Any, embed: dict[str, Any]) -> dict[str, Any]:
        check = crypto.seal(key.key, b"memos-store", "check/" + key.key_id)
        return {"memos_format": STORE_FORMAT, "key_id": key.key_id,
                "check": crypto.b64e(check), "vector_tags": 1, **embed}

    def _refresh_if_stale(self) -> None:
        """Notice writes by other engines or processes since we last looked.

        Two caches can go stale: this engine's (codec, keyword index, collection
        handle), and Chroma's own client, which is shared by the whole process.
        """
        current = _read_text(self.paths.data_dir / "store.gen")
        if self._generation is not None and current != self._generation:
            self.store.disconnect()
            self._codec = None
            self._keywords = None
            self.usage.reset()
        shared = str(self.paths.chroma_dir)
        if _SEEN_GENERATION.get(shared, current) != current:
            self.store.reset()  # another process wrote through its own Chroma client
        _SEEN_GENERATION[shared] = current
        self._generation = current

    def _recover_consolidation(self) -> None:
        if any(self.paths.data_dir.glob(".consolidation-*")):
            from memos_cli import consolidation

            consolidation.recover(self)
            self._codec = None
            self._bump_generation()  # other processes must re-read the restored files

    def _recover_restore(self) -> None:
        if self.paths.restore_marker(self.profile).exists():
            from memos_cli import backup

            self._load_store_token()
            backup.recover(self)

    def _bump_generation(self) -> None:
        token = secrets.token_hex(8)
        write_atomic(self.paths.data_dir / "store.gen", token.encode())
        self._generation = _SEEN_GENERATION[str(self.paths.chroma_dir)] = token

    # --- crash safety: the write journal --------------------------------------------------

    @contextmanager
    def _journal(self, ids: Sequence[str], event: Event | None = None) -> Iterator[None]:
        """Rows ``ids`` are deleted at next open if we die inside the block: rows being
        added are rolled back, rows being forgotten are forgotten all the same. The audit
        ``event`` is recorded once the rows are gone, by us or by whoever recovers."""
        path = self.paths.journal_file(self.profile)
        doc: dict[str, Any] = {"version": 1, "add": list(ids)}
        if event is not None:
            doc["event"] = asdict(event)
        write_atomic(path, json.dumps(doc).encode())
        try:
            yield
        except BaseException:
            self._keywords = None  # it may list rows that are gone again: reload it
            self.store.scrub_delete(self._existing(ids), self._dim())
            self._record(event)
            path.unlink(missing_ok=True)
            raise
        self._record(event)
        path.unlink(missing_ok=True)

    def _recover_journal(self) -> None:
        path = self.paths.journal_file(self.profile)
        text = _read_text(path)
        if text is None:
            return
        try:
            doc = json.loads(text)
            ids, event = doc["add"], Event(**doc["event"]) if "event" in doc else None
        except (ValueError, KeyError, TypeError):
            ids, event = [], None
        self.store.scrub_delete(self._existing(ids), self._dim())
        if event is not None and self.audit_log.read(self._keys())[-1:] != [event]:
            self._record(event)  # (a process killed after recording it left it last)
        path.unlink(missing_ok=True)
        self._notice("notice: an interrupted " + ("forget was finished" if event
                                                  else "write was rolled back"))

    def _record(self, event: Event | None) -> None:
        if event is not None:
            self.audit_log.append(self._keys(), [event])

    def _existing(self, ids: Sequence[str]) -> list[str]:
        return [row.id for row in self.store.get(list(ids))]

    def _dim(self) -> int:
        return int(self.store.meta().get("embed_dim") or self.embedder.dim)

    # --- the keyword index -----------------------------------------------------------------

    def _keyword_index(self) -> KeywordIndex:
        """The profile's keyword index: loaded, or rebuilt if missing or out of step."""
        if self._keywords is None:
            assert self._codec is not None
            index = self._load_keywords(take=True)
            if index is None or not self._index_matches(index):
                # Storage order is insertion order, which threads need.
                memories = [m for _row, m in self._open_rows(self._codec, self.store.scan())]
                index = KeywordIndex([_entry(m) for m in memories])
                self._keywords = index
                self._save_keywords()
            self._keywords = index
        return self._keywords

    def _load_keywords(self, take: bool = False) -> KeywordIndex | None:
        """The saved keyword index, or None. Decrypting and decompressing it grows with the
        store, so one read before the lock (``_query_vector``) serves the locked use that
        follows (``take``), unless a write replaced the file in between: files are
        replaced whole, never changed in place, so a new file has a new identity."""
        path = self.paths.keyword_file(self.profile)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        identity = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        ahead, self._read_ahead = self._read_ahead, None
        if ahead is not None and ahead[0] == identity:
            index: KeywordIndex | None = ahead[1]
        else:
            index = KeywordIndex.load(path, self._keys(), self._index_context)
        if index is not None and not take:
            self._read_ahead = (identity, index)
        return index

    def _index_matches(self, index: KeywordIndex) -> bool:
        """Whether a saved index covers exactly the stored memories. On a server, other
        machines write too, so the ids themselves are compared, not only the count."""
        if len(index) != self.store.count():
            return False
        if self.store.remote is None:
            return True
        return {e.id for e in index.entries} == set(self.store.all_ids())

    def _save_keywords(self) -> None:
        if self._keywords is not None:
            self._keywords.save(self.paths.keyword_file(self.profile), self._keys(),
                                self._index_context)

    def _keys(self) -> Unlocked:
        """The unlocked keys: side files open with the key they name, and new ones are
        sealed under the next key mid-rotation, as rows are."""
        assert self._unlocked is not None
        return self._unlocked

    def _vault(self) -> Vault:
        return Vault(self.paths.vault_file(self.profile), self.profile)

    @property
    def _index_context(self) -> str:
        return f"keywords/{self.profile}"

    # --- moving the key between machines ---------------------------------------------------

    def export_key(self, passphrase: str) -> dict[str, Any]:
        """The profile's data key wrapped under ``passphrase``, for ``import_key`` elsewhere."""
        if not passphrase:
            raise UsageError("the export passphrase is empty")
        with self._session(write=False) as codec:
            if codec is None:
                raise NotFoundError("this profile has no key yet: nothing to export")
            assert self._unlocked is not None
            return self.keys.export(self._unlocked, passphrase)

    def import_key(self, exported: dict[str, Any], passphrase: str) -> None:
        """Join a store made elsewhere (a shared Chroma server) by adopting its key.

        A key this machine already has is replaced only if no store opens with it (an
        earlier ``config set`` of a secret made it); its vault is re-sealed, not lost.
        """
        with self._locked():
            unused = self._unused_key()
            imported = self.keys.open_export(exported, passphrase)
            if unused is not None:  # re-sealed first: the old key still exists if we die here
                self._reseal_side_files(Unlocked(unused, imported))
            self._unlocked = self.keys.import_key(exported, passphrase, replace=unused is not None,
                                                  opened=imported)
            self._audit("key changed", [])

    def _unused_key(self) -> DataKey | None:
        """This profile's data key if it has one that opens no store; None if it has none.

        Raises if memories are stored under it: replacing it would orphan them.
        """
        if self._unlocked is None:
            return None
        if self.store.exists() and self.store.meta().get("key_id") == self._unlocked.current.key_id:
            raise UsageError(f"profile {self.profile!r} already has memories under its own key: "
                             "importing another would orphan them (use another --profile)")
        return self._unlocked.current

    # --- secrets (API keys) -----------------------------------------------------------------

    def secret(self, name: str) -> str | None:
        """A secret from the profile's vault (None if unset or no profile yet)."""
        if self.unlock() is None:
            return None
        return self._vault().read(self._keys()).get(name)

    def set_secret(self, name: str, value: str | None) -> None:
        """Store (or with None, remove) a secret in the vault, sealed.

        Only the key is needed, not the store: a server's token is set before memos
        can reach the server.
        """
        with self._locked():
            if self._unlocked is None:
                # A server may not be reachable before its token is set: only a local
                # store is checked for a lost key.
                self._unlocked = self._create_key(check_store=self.store.remote is None)
            vault = self._vault()
            secrets_ = vault.read(self._keys())
            if value is None:
                secrets_.pop(name, None)
            else:
                secrets_[name] = value
            vault.write(self._keys(), secrets_)

    # --- the audit trail ---------------------------------------------------------------------

    def _audit(self, action: str, ids: list[str], count: int = 0) -> None:
        self.audit_log.append(self._keys(), [self._event(action, ids, count)])

    def _event(self, action: str, ids: list[str], count: int = 0) -> Event:
        return Event(to_iso(now_utc()), action, list(ids), self.cause, count or len(ids))

    def audit(self, since: datetime | None = None) -> list[Event]:
        """Every recorded change, oldest first (``audit_log.damaged`` counts lines that fail their check)."""
        with self._session(write=False) as codec:
            if codec is None:
                return []
            events = self.audit_log.read(self._keys())
        return [e for e in events if since is None or from_iso(e.at) >= since]

    # --- writing -------------------------------------------------------------------------

    def remember(self, new: NewMemory) -> RememberResult:
        return self.remember_many([new])[0]

    def remember_many(self, items: Sequence[NewMemory]) -> list[RememberResult]:
        """Store several memories at once; exact repeats of stored texts are not added."""
        now = to_iso(now_utc())
        memories = [self._new_memory(item, now) for item in items]
        vectors = self.embedder.embed([m.text for m in memories]) if memories else None
        if vectors is not None:
            self._warm(vectors.shape[1])
        with self._session(write=True) as codec:
            assert codec is not None
            return self._insert(codec, memories, vectors)

    def _insert(self, codec: RecordCodec, memories: list[Memory],
                vectors: np.ndarray | None, action: str = "remembered") -> list[RememberResult]:
        results: list[RememberResult] = []
        fresh: list[int] = []
        tags = [codec.text_tag(m.text) for m in memories]
        stored = self._rows_by_tag(codec, tags)
        seen: dict[str, int] = {}
        for n, (memory, tag) in enumerate(zip(memories, tags)):
            if tag in stored:
                results.append(RememberResult(stored[tag], created=False))
            elif tag in seen:
                results.append(RememberResult(memories[seen[tag]], created=False))
            else:
                seen[tag] = n
                fresh.append(n)
                results.append(RememberResult(memory, created=True))
        if fresh:
            assert vectors is not None
            self._add_rows(codec, [memories[n] for n in fresh], vectors[fresh], action)
        return results

    def _rows_by_tag(self, codec: RecordCodec, tags: Sequence[str]) -> dict[str, Memory]:
        """Stored memories whose keyed text hash is among ``tags`` (exact-duplicate lookup).

        Each is opened, which checks its hash against its text: a row carrying another
        text's hash is reported damaged, and does not pass for a duplicate."""
        found: dict[str, Memory] = {}
        unique = sorted(set(tags))
        for start in range(0, len(unique), 500):
            batch = unique[start:start + 500]
            where = {"h": batch[0]} if len(batch) == 1 else {"h": {"$in": batch}}
            for row, memory in self._open_rows(codec, self.store.find(where), with_usage=False):
                found[row.meta["h"]] = memory
        return found

    def _add_rows(self, codec: RecordCodec, memories: list[Memory], vectors: np.ndarray,
                  action: str) -> None:
        """Store new memories and index their words, as one journalled write."""
        if not memories:
            return
        index = self._keyword_index()  # loaded before the add, so it is not seen as stale
        ids = [m.id for m in memories]
        # Everything the add changes is inside the journal: a failure anywhere (a full
        # disk) rolls all of it back, and once the journal is cleared nothing can fail.
        with self._journal(ids):
            blinded = codec.blind(vectors)
            self.store.add(ids, blinded, [codec.seal(m, vector=v) for m, v in zip(memories, blinded)])
            index.add([_entry(m) for m in memories])
            self._save_keywords()
            meta = self.store.meta()  # counts toward consolidating by itself (a number only)
            meta["new_since_consolidation"] = int(meta.get("new_since_consolidation", 0)) + len(ids)
            self.store.set_meta(meta)
            self.new_since_consolidation = meta["new_since_consolidation"]
            self._audit(action, ids)

    def _new_memory(self, item: NewMemory, now: str) -> Memory:
        text = item.text.strip()
        if not text:
            raise UsageError("nothing to remember: the text is empty")
        memory = Memory(id=new_id(), text=text, kind=check_kind(item.kind) or "note",
                        tags=normalise_tags(item.tags), importance=float(item.importance),
                        created_at=now, updated_at=now,
                        occurred_at=to_iso(item.occurred_at) if item.occurred_at else None,
                        source=item.source, source_ref=item.source_ref,
                        valid_from=to_iso(item.valid_from) if item.valid_from else None,
                        derived_from=list(item.derived_from),
                        tier=item.tier or initial_tier(item.kind))
        try:
            memory.validate()
        except Exception as exc:
            raise UsageError(str(exc)) from None
        return memory

    def update(self, ref: str, text: str | None = None, *, kind: str | None = None,
               tags: list[str] | None = None, importance: float | None = None,
               reason: str = "update") -> Memory:
        """Change a memory; its previous state goes into its history.

        By default the change happened in the world now: ``recall --at`` an earlier
        time still reads the old text. With ``reason=CORRECTED`` the old text was a
        mistake: at every time the memory reads as corrected (the old text stays in
        its history, marked "corrected").
        """
        check_kind(kind)
        new_text = text.strip() if text is not None else None
        if new_text == "":
            raise UsageError("the new text is empty")
        vector = self.embedder.embed([new_text]) if new_text else None

        def change(memory: Memory) -> None:
            memory.text = new_text or memory.text
            memory.kind = kind or memory.kind
            memory.tags = normalise_tags(tags) if tags is not None else memory.tags
            memory.importance = memory.importance if importance is None else float(importance)

        with self._session(write=True) as codec:
            assert codec is not None
            return self._modify(codec, self._resolve(ref), change, reason, vector)

    def invalidate(self, ref: str, *, reason: str = "invalidated") -> Memory:
        """Mark a memory no longer valid from now on; it stays, with its history.

        Recall and list skip invalid memories unless asked; only ``forget`` deletes.
        """
        with self._session(write=True) as codec:
            assert codec is not None
            return self._modify(codec, self._resolve(ref), _end_validity, reason, None)

    def supersede(self, ref: str, new: NewMemory) -> tuple[Memory, Memory]:
        """A fact changed: the old memory stops being valid now, the new one starts now.

        Returns (old, new); the new memory records the old one in ``derived_from``.
        """
        now = now_utc()
        replacement = self._new_memory(new, to_iso(now))
        vector = self.embedder.embed([replacement.text])
        with self._session(write=True) as codec:
            assert codec is not None
            old_id = self._resolve(ref)
            replacement.valid_from = to_iso(now)
            replacement.derived_from = [old_id, *replacement.derived_from]
            old = self._modify(codec, old_id, _end_validity, "superseded", None)
            result = self._insert(codec, [replacement], vector)[0]
            return old, result.memory

    def _modify(self, codec: RecordCodec, memory_id: str, change: Callable[[Memory], None],
                reason: str, vector: np.ndarray | None) -> Memory:
        """Apply ``change`` to a stored memory, keeping its previous state in its history."""
        memory = codec.open(self.store.get([memory_id])[0])
        before = memory.text
        memory.history.append(Version(memory.text, memory.kind, list(memory.tags),
                                      memory.importance, memory.updated_at, reason))
        change(memory)
        if memory.text != before:
            clash = self.store.find({"h": codec.text_tag(memory.text)})
            if clash:
                raise UsageError(f"memory {clash[0].id[:8]} already has that text")
        memory.updated_at = to_iso(now_utc())
        memory.validate()
        blinded = codec.blind(vector) if vector is not None else None
        index = self._keyword_index()
        self.store.update([memory.id], [codec.seal(memory, vector=None if blinded is None
                                                   else blinded[0])], blinded)
        if memory.text != before:
            index.replace(memory.id, tokenize(memory.text))
            self._save_keywords()
        self._audit(_ACTIONS_BY_REASON.get(reason, "updated"), [memory.id])
        return memory

    def forget(self, ids: Sequence[str], *, cascade: bool = True) -> int:
        """Delete memories for good: no text, vector or old version stays on disk.

        Forgetting follows provenance: a memory consolidation made from a forgotten
        one (a summary) is forgotten too (``cascade``); any other memory that holds
        a forgotten one's text in its history (a merge) is rebuilt without it.
        """
        with self._session(write=True) as codec:
            if codec is None:
                return 0
            full = sorted({self._resolve(ref) for ref in ids})
            doomed, rebuilt = self._provenance(codec, full, cascade)
            index = self._keyword_index()
            self._strip_sources(codec, rebuilt, set(doomed))
            # The trail keeps that something was forgotten, and when; not which.
            self.audit_log.strike(self._keys(), doomed)
            self.usage.forget(self._keys(), doomed)
            # Journalled like an add: if the server drops or memos is killed half-way,
            # the deletion is finished (never undone) at the next open.
            with self._journal(doomed, self._event("forgotten", [], count=len(doomed))):
                self.store.scrub_delete(doomed, self._dim())
            index.remove(doomed)
            self.damaged = [i for i in self.damaged if i not in set(doomed)]  # gone for good
            self._save_keywords()
            return len(doomed)

    def forget_preview(self, ids: Sequence[str], *, cascade: bool = True
                       ) -> tuple[list[Memory], list[Memory]]:
        """(memories that forgetting ``ids`` deletes, memories it rebuilds), changing nothing."""
        with self._session(write=False) as codec:
            if codec is None:
                return [], []
            full = sorted({self._resolve(ref) for ref in ids})
            doomed, rebuilt = self._provenance(codec, full, cascade)
            opened = [m for _row, m in self._open_rows(codec, self.store.get(doomed))]
            return opened, rebuilt

    def prune(self) -> int:
        """Delete archived memories for good (what they were summarised into stays)."""
        archived = [m.id for m in self.list(include_inactive=True) if m.status == "archived"]
        return self.forget(archived, cascade=False) if archived else 0

    def _provenance(self, codec: RecordCodec, ids: list[str],
                    cascade: bool) -> tuple[list[str], list[Memory]]:
        """The ids to delete (``ids`` and, with ``cascade``, summaries made from them)
        and the other memories that refer to any of them."""
        children: dict[str, list[Memory]] = {}
        for _row, memory in self._open_rows(codec, self.store.scan(), with_usage=False):
            for source in memory.derived_from:
                children.setdefault(source, []).append(memory)
        doomed, queue, touched = set(ids), list(ids), {}
        while queue:
            for child in children.get(queue.pop(), []):
                if cascade and child.source == "consolidation" and child.id not in doomed:
                    doomed.add(child.id)
                    queue.append(child.id)
                else:
                    touched[child.id] = child
        return sorted(doomed), [m for i, m in touched.items() if i not in doomed]

    def _strip_sources(self, codec: RecordCodec, memories: list[Memory], gone: set[str]) -> None:
        """Remove every trace of ``gone`` memories from ``memories`` (history, links)."""
        for memory in memories:
            brought = {t for v in memory.history if v.source_id in gone for t in v.added_tags}
            memory.history = [v for v in memory.history if v.source_id not in gone]
            still = {t for v in memory.history if v.source_id is not None for t in v.tags}
            memory.tags = [t for t in memory.tags if t not in brought or t in still]
            memory.derived_from = [i for i in memory.derived_from if i not in gone]
        if memories:
            self.store.update([m.id for m in memories], [codec.seal(m) for m in memories])

    def forget_all(self) -> int:
        """Destroy the profile: every memory, the collection and the keys.

        Needs no key: it is the way out of a lost passphrase. The count is of rows,
        whether or not they could be opened.
        """
        with self._locked(unlock=False):
            count = self.store.count() if self.store.exists() else 0
            self.store.drop()
            self.store.sibling(self.profile + "-reindex").drop()
            self.keys.destroy()
            for path in self.paths.profile_files(self.profile).everything:
                path.unlink(missing_ok=True)
            self.usage.reset()
            self.damaged = []
            self._unlocked = self._codec = self._keywords = None
            self._bump_generation()
            return count

    def import_memories(self, memories: Sequence[Memory],
                        progress: Progress | None = None) -> ImportResult:
        """Add exported memories as they were (ids, dates, history); all or nothing.

        A memory whose id or exact text is already stored is skipped, so importing
        the same file twice adds nothing the second time.
        """
        # Embedded before taking the lock, which others would otherwise wait minutes
        # for: the ones found already stored are embedded too, for nothing.
        vectors = self._embed_batched([m.text for m in memories], progress)
        self._warm(vectors.shape[1])
        with self._session(write=True) as codec:
            assert codec is not None
            present = set(self._existing([m.id for m in memories]))
            todo = [n for n, m in enumerate(memories) if m.id not in present]
            tags = [codec.text_tag(memories[n].text) for n in todo]
            texts_seen = set(self._rows_by_tag(codec, tags))
            batch: list[int] = []
            for n, tag in zip(todo, tags):
                if tag not in texts_seen:
                    texts_seen.add(tag)
                    batch.append(n)
            self._add_rows(codec, [memories[n] for n in batch], vectors[batch], "imported")
            return ImportResult(added=len(batch), skipped=len(memories) - len(batch))

    def _embed_batched(self, texts: list[str], progress: Progress | None,
                       step: int = 256) -> np.ndarray:
        parts = []
        for start in range(0, len(texts), step):
            parts.append(self.embedder.embed(texts[start:start + step]))
            if progress:
                progress(min(start + step, len(texts)), len(texts))
        if not parts:
            return np.zeros((0, int(self.embedder.dim or 1)), dtype=np.float32)
        return np.vstack(parts)

    # --- reading -------------------------------------------------------------------------

    def recall(self, query: str, limit: int = 10, *, where: Filter | None = None,
               record_access: bool = True, floor: float | None = None,
               **filters: Any) -> list[Hit]:
        """The memories that best answer ``query``, best first.

        Two retrievers each propose candidates: the vector index (meaning) and BM25
        over neighbour windows (words). Their scores are z-normalised over the
        candidates and added. See docs/benchmarks.md for what each part is worth.
        """
        if limit <= 0:
            raise UsageError("--limit must be at least 1")
        keep = where or Filter(**filters)
        floor = self.recall_floor if floor is None else floor
        vector = self._query_vector(query)
        # Counting accesses changes metadata only: other processes need not reload.
        with self._session(write=False) as codec:
            if codec is None:
                return []
            index = self._keyword_index()
            blinded = codec.blind(vector)[0]
            ids, keyword_scores = index.scores(query)
            coverage = index.coverage(query)[1:]
            total, want = len(index), max(CANDIDATES, limit * 3)
            period, asked = query_period(query), retrieval.Asked.of(query)
            while True:
                ranked = self._fuse(blinded, ids, keyword_scores, coverage, want)
                relevant = _Relevant(keep, floor, period, asked)
                hits = self._first_hits(codec, ranked, relevant, asked,
                                        limit if period is None else want)
                if len(hits) >= limit or want >= total:
                    break
                want *= 4
            if period is not None:
                hits = favour_period(hits, period)[:limit]
            elif crowded_by_episodes(hits, query):
                hits = facts_first(self._first_hits(codec, ranked, relevant, asked, want))[:limit]
            if record_access:
                self._touch(hits)
            return hits

    def _query_vector(self, query: str) -> np.ndarray:
        """The query's embedding, made before taking the lock (loading the model and
        embedding are not for other processes to wait on). Words found in most memories
        are left out (``KeywordIndex.strip_common``), as the saved keyword index says: it
        is read without the lock, which is safe (it is replaced atomically), and one a
        write or two old serves as well."""
        index = self._keywords
        if index is None and self.unlock() is not None:
            index = self._load_keywords()
        vector = self.embedder.embed([index.strip_common(query) if index else query])
        self._warm(vector.shape[1])
        return vector

    def _touch(self, hits: list[Hit]) -> None:
        """Count each recall of a memory: use is what promotes it to long-term."""
        if not hits:
            return
        now = to_iso(now_utc())
        self.usage.record(self._keys(), [h.memory.id for h in hits], now)
        for hit in hits:
            hit.memory.access_count += 1
            hit.memory.last_access = now

    def _first_hits(self, codec: RecordCodec, ranked: list[Candidate],
                    keep: _Relevant, asked: retrieval.Asked, limit: int) -> list[Hit]:
        """Open ranked rows in order until the best ``limit`` that pass the filters are
        known (``retrieval.settled``: decrypt no more), best first by their text-adjusted
        rank score (``retrieval.answer_score``)."""
        hits: list[Hit] = []
        scores: list[float] = []
        for candidate in ranked:
            if retrieval.settled(scores, limit, candidate.fused):
                break
            for _row, memory in self._open_rows(codec, [candidate.row]):
                hit = keep(memory, candidate)
                if hit is not None:
                    hits.append(hit)
                    scores.append(retrieval.answer_score(candidate.fused, memory.text, asked,
                                                         memory.kind == "episode"))
        return [hits[n] for n in retrieval.best_first(scores)[:limit]]

    def _fuse(self, query: np.ndarray, ids: list[str], keyword_scores: np.ndarray,
              coverage: tuple[np.ndarray, np.ndarray], want: int) -> list[Candidate]:
        """Candidates from both retrievers, best first by fused rank."""
        rows = {row.id: row for row in self.store.query(query, min(want, len(ids)))}
        cosine = {i: 1.0 - float(row.distance or 0.0) for i, row in rows.items()}  # query rows
        position = self._keyword_index().positions()
        top_words = [ids[n] for n in top(keyword_scores, want) if keyword_scores[n] > 0]
        for row in self.store.get([i for i in top_words if i not in rows], with_vectors=True):
            rows[row.id] = row
            assert row.vector is not None  # asked for with_vectors
            cosine[row.id] = float(np.dot(row.vector, query))  # rotation keeps dot products
        order = list(rows)
        dense = zscore(np.array([cosine[i] for i in order]))
        words = zscore(np.array([keyword_scores[position[i]] if i in position else 0.0
                                  for i in order]))
        fused = dense + words
        own, window = coverage

        def share(scores: np.ndarray, i: str) -> float:
            return float(scores[position[i]]) if i in position else 0.0

        return [Candidate(rows[i], float(fused[n]), cosine[i], share(own, i), share(window, i))
                for n in np.argsort(-fused, kind="stable") for i in [order[n]]]

    def list(self, *, limit: int | None = None, where: Filter | None = None,
             **filters: Any) -> list[Memory]:
        """Memories, newest first."""
        keep = where or Filter(**filters)
        memories = [shown for shown in map(keep.shown, reversed(self.all_memories()))
                    if shown is not None]
        return memories[:limit] if limit else memories

    def all_memories(self) -> builtins.list[Memory]:
        """Every memory that opens, oldest first; damaged ones are noted in ``damaged``.

        Memories made in the same second keep the order they were stored in
        (Chroma returns rows in insertion order and the sort is stable).
        """
        with self._session(write=False) as codec:
            if codec is None:
                return []
            memories = [m for _row, m in self._open_rows(codec, self.store.scan())]
        memories.sort(key=lambda m: m.created_at)
        return memories

    def show(self, ref: str) -> Memory:
        with self._session(write=False) as codec:
            if codec is None:
                raise NotFoundError(f"no memory matches {ref!r}")
            return self.usage.apply(self._keys(),
                                    codec.open(self.store.get([self._resolve(ref)])[0]))

    def lookup(self, refs: Sequence[str]) -> tuple[builtins.list[Memory], builtins.list[str]]:
        """The memories ``refs`` name, and the ids among them that are damaged (unreadable),
        which can still be forgotten by id."""
        with self._session(write=False) as codec:
            if codec is None:
                raise NotFoundError(f"no memory matches {refs[0]!r}")
            ids = list(dict.fromkeys(self._resolve(ref) for ref in refs))
            opened = {row.id: m for row, m in self._open_rows(codec, self.store.get(ids))}
        return [opened[i] for i in ids if i in opened], [i for i in ids if i not in opened]

    def _resolve(self, ref: str) -> str:
        ref = ref.strip().lower()
        if len(ref) < MIN_PREFIX:
            raise UsageError(f"an id prefix needs at least {MIN_PREFIX} characters: {ref!r}")
        matches = [i for i in self.store.all_ids() if i.startswith(ref)]
        if not matches:
            raise NotFoundError(f"no memory matches {ref!r}")
        if len(matches) > 1:
            raise NotFoundError(f"{ref!r} is ambiguous: it matches {len(matches)} memories")
        return matches[0]

    def _open_rows(self, codec: RecordCodec, rows: Iterable[Any],
                   with_usage: bool = True) -> Iterator[tuple[Any, Memory]]:
        """Decrypt rows; ``with_usage`` adds recorded recalls (for reading, not rewriting)."""
        key = self._keys()
        for row in rows:
            try:
                memory = codec.open(row)
            except IntegrityError:
                if row.id not in self.damaged:
                    self.damaged.append(row.id)
                continue
            yield row, (self.usage.apply(key, memory) if with_usage else memory)

    def stats(self) -> dict[str, Any]:
        memories = self.all_memories()
        def count_by(field: str) -> dict[str, int]:
            counts: dict[str, int] = {}
            for m in memories:
                counts[getattr(m, field)] = counts.get(getattr(m, field), 0) + 1
            return counts

        info: dict[str, Any] = {
            "profile": self.profile, "memories": len(memories), "by_kind": count_by("kind"),
            "by_status": count_by("status"), "by_tier": count_by("tier"),
            "damaged": len(self.damaged),
            "bytes_on_disk": _tree_bytes(self.paths.data_dir),
            "data_dir": str(self.paths.data_dir),
        }
        with self._session(write=False) as codec:
            meta = self.store.meta() if codec is not None else {}
        info["embedding_model"] = meta.get("embed_model") or self._configured_model()
        info["embedding_dim"] = meta.get("embed_dim")
        info["key_mode"] = self.keys.status()["mode"] if self.keys.exists() else None
        return info

    # --- maintenance ---------------------------------------------------------------------

    def reindex(self, progress: Progress | None = None) -> int:
        """Re-embed every memory with the configured model into a fresh collection.

        The new collection is built beside the old one and swapped in at the end,
        so a crash at any point leaves one complete, consistent store.
        """
        with self._locked():
            if self._unlocked is None:
                self._refuse_foreign_store()
                return 0
            if not self.store.exists():
                return 0
            self._check_store_key_only()
            codec = self._new_codec()
            rows = list(self.store.scan())
            memories = [codec.open(row) for row in rows]
            vectors = self._embed_batched([m.text for m in memories], progress)
            self._swap_in(codec, rows, vectors)
            self._codec = None
            self._bump_generation()
            self._audit("reindexed", [], count=len(memories))
            return len(memories)

    def _check_store_key_only(self) -> None:
        meta = self.store.meta()
        saved = meta.get("embed_model")
        meta["embed_model"] = self._configured_model()
        self._check_store(meta)
        meta["embed_model"] = saved

    def _swap_in(self, codec: RecordCodec, rows: builtins.list[Any], vectors: np.ndarray) -> None:
        assert self._unlocked is not None
        temp = self.store.sibling(self.profile + "-reindex")
        temp.drop()
        temp.create(self._store_meta(self._unlocked.current, self._embed_meta()))
        blinded = codec.blind(vectors)
        temp.add([r.id for r in rows], blinded,
                 [codec.tag_vector(r.meta, r.id, v) for r, v in zip(rows, blinded)])
        self.store.drop()  # the old collection goes first: Chroma names are unique
        temp.collection.modify(name=self.store.collection_name)
        self.store.reset()
        self.store.compact()

    def _recover_reindex(self) -> None:
        """Finish or undo a reindex that was interrupted."""
        temp = self.store.sibling(self.profile + "-reindex")
        if not temp.exists():
            return
        if self.store.exists():
            temp.drop()  # died before the swap: the old store is intact
        else:
            temp.collection.modify(name=self.store.collection_name)  # died mid-swap
            self.store.reset()

    def change_passphrase(self, new_passphrase: str) -> None:
        """Re-wrap the data key under ``new_passphrase``, proven against the store first."""
        if not new_passphrase:
            raise UsageError("the new passphrase is empty")
        with self._locked():
            unlocked = self._unlocked or self._create_key()
            self._unlocked = unlocked

            def proves(candidate: Unlocked) -> None:
                if self.store.exists():
                    saved, self._unlocked = self._unlocked, candidate
                    try:
                        self._check_store_key_only()
                    except IntegrityError:
                        raise WrongKeyError("the new wrap does not open the store: "
                                            "the passphrase was not changed") from None
                    finally:
                        self._unlocked = saved

            self.keys.set_passphrase(new_passphrase, unlocked, proves)
            self._audit("key changed", [])

    def rotate_key(self, progress: Progress | None = None) -> int:
        """Re-encrypt every memory under a new data key; resumable after a crash."""
        with self._locked():
            if self._unlocked is None:
                self._refuse_foreign_store()
                raise NotFoundError("this profile has no key yet: nothing to rotate")
            if self.store.exists():
                self._check_store_key_only()
            self._unlocked = self.keys.begin_rotation(self._unlocked)
            count = self._rotate_rows(progress)
            self._codec = None
            self._bump_generation()
            return count

    def _rotate_rows(self, progress: Progress | None = None) -> int:
        """Re-seal rows, then every side file, under the next key; only then drop the old
        one. Each step can run again after a kill: rows and files name their key."""
        assert self._unlocked is not None and self._unlocked.next is not None
        old, new = self._unlocked.current, self._unlocked.next
        count = 0
        if self.store.exists():
            codec = self._new_codec()
            rows = [r for r in self.store.scan(with_vectors=True) if r.meta.get("k") == old.key_id]
            for row in rows:
                memory = codec.open(row)
                assert row.vector is not None  # scanned with vectors
                # Undo the old rotation and apply the new one: no re-embedding needed.
                vector = row.vector.astype(np.float32) @ old.rotation(len(row.vector))
                blinded = crypto.blind(vector[None, :], new.rotation(len(row.vector)))
                self.store.update([row.id], [codec.seal(memory, key=new, vector=blinded[0])],
                                  blinded)
                count += 1
                failpoint("rotate:row-done")
                if progress:
                    progress(count, len(rows))
            self.store.set_meta(self._store_meta(new, {
                k: v for k, v in self.store.meta().items() if k.startswith("embed_")}))
            self.store.compact()  # old ciphertexts leave SQLite's free pages
        failpoint("rotate:rows-done")
        self._reseal_side_files(self._unlocked)
        self._audit("key changed", [], count=count)  # under the next key, before the old goes
        failpoint("rotate:before-finish")
        self._unlocked = self.keys.finish_rotation(self._unlocked)
        failpoint("rotate:finished")
        self._codec = self._new_codec() if self.store.exists() else RecordCodec(self._unlocked)
        return count

    def _reseal_side_files(self, keys: Unlocked) -> None:
        """Re-seal the keyword index, audit trail, vault and usage counts under the writing
        key of ``keys`` (which must also hold the key they are sealed under now)."""
        index = KeywordIndex.load(self.paths.keyword_file(self.profile), keys, self._index_context)
        if index is not None:
            index.save(self.paths.keyword_file(self.profile), keys, self._index_context)
        else:  # damaged or absent: it is a cache, rebuilt when next needed
            self.paths.keyword_file(self.profile).unlink(missing_ok=True)
        self._keywords = None
        failpoint("reseal:index")
        self.audit_log.reseal(keys)
        failpoint("reseal:audit")
        self._vault().reseal(keys)
        failpoint("reseal:vault")
        self.usage.reseal(keys)


class UnitOfWork:
    """What an opened, unlocked, locked profile offers for one batch of changes.

    Handed out by ``MemoryEngine.unit``, valid only inside its ``with`` block (the
    store lock is held). Consolidation, backup and the benchmarks work through it, so
    none of them reaches into the engine's internals.
    """

    def __init__(self, engine: MemoryEngine, codec: RecordCodec) -> None:
        self._engine = engine
        self.codec = codec  # seals and opens rows
        self.store = engine.store

    @property
    def keys(self) -> Unlocked:
        return self._engine._keys()

    def open_rows(self, rows: Iterable[Any], with_usage: bool = True
                  ) -> Iterator[tuple[Any, Memory]]:
        """Decrypt rows (damaged ones are noted in ``engine.damaged`` and skipped)."""
        return self._engine._open_rows(self.codec, rows, with_usage=with_usage)

    def new_memory(self, item: NewMemory, now: str) -> Memory:
        return self._engine._new_memory(item, now)

    def insert(self, memories: list[Memory], vectors: np.ndarray | None,
               action: str = "remembered") -> list[RememberResult]:
        """Store new memories (journalled, indexed, audited as ``action``)."""
        return self._engine._insert(self.codec, memories, vectors, action=action)

    def modify(self, memory_id: str, change: Callable[[Memory], None], reason: str,
               vector: np.ndarray | None = None) -> Memory:
        """Change a stored memory, its previous state kept in its history."""
        return self._engine._modify(self.codec, memory_id, change, reason, vector)

    def keyword_index(self) -> KeywordIndex:
        return self._engine._keyword_index()

    def record(self, action: str, ids: list[str], count: int = 0) -> None:
        """Add an event to the audit trail."""
        self._engine._audit(action, ids, count)


_ACTIONS_BY_REASON = {"update": "updated", CORRECTED: "updated", "superseded": "superseded",
                      "invalidated": "invalidated", "merged": "merged", "archived": "archived",
                      "promoted": "promoted", "demoted": "demoted", "summarised": "summarised"}
_EMBEDDERS: dict[tuple, Any] = {}
# The store generation this process's Chroma client has seen, per Chroma folder.
_SEEN_GENERATION: dict[str, str | None] = {}


def _shared_embedder(settings: EmbeddingSettings) -> Any:
    """One embedder per configuration per process, so the model loads once."""
    from memos_cli.embedding import make_embedder

    key = (settings.model, settings.base_url, settings.api_key, settings.timeout)
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = make_embedder(settings.model, base_url=settings.base_url,
                                        api_key=settings.api_key, timeout=settings.timeout)
    return _EMBEDDERS[key]


def _entry(memory: Memory) -> Entry:
    # Memories recorded for the same moment (one session, one batch) are a thread.
    return Entry(memory.id, memory.occurred_at or memory.created_at, tokenize(memory.text))


def _end_validity(memory: Memory) -> None:
    memory.status = "invalid"
    memory.valid_to = to_iso(now_utc())


@dataclass(frozen=True)
class _Relevant:
    """A recall's test of an opened candidate: passes the filters and clears the floor."""

    keep: "Filter"
    floor: float
    period: tuple[datetime, datetime] | None = None  # a time the query names
    asked: retrieval.Asked | None = None  # who the query names, if anyone

    def __call__(self, memory: Memory, candidate: Candidate) -> Hit | None:
        words = keyword_evidence(memory, candidate.cosine, candidate.own, candidate.window)
        another = (self.asked is not None and memory.kind == "episode"
                   and retrieval.said_by_another(memory.text, self.asked))
        score = relevance(candidate.cosine, words, another)
        # Naming a time is evidence too: what happened then clears the floor.
        relevant = score >= self.floor or (self.period is not None
                                           and happened_in(memory, self.period))
        shown = self.keep.shown(memory) if relevant else None
        return None if shown is None else Hit(shown, score, candidate.cosine, words)


@dataclass(frozen=True)
class Filter:
    """Which memories a list or recall may return."""

    kind: str | None = None
    tag: str | None = None
    tier: str | None = None
    since: datetime | None = None  # by when it happened (or was recorded)
    until: datetime | None = None
    at: datetime | None = None  # only what was true then (invalid ones included)
    include_inactive: bool = False

    def __post_init__(self) -> None:
        check_kind(self.kind)
        if self.tier is not None and self.tier not in TIERS:
            raise UsageError(f"unknown tier {self.tier!r}: use one of {', '.join(TIERS)}")

    def shown(self, m: Memory) -> Memory | None:
        """The memory as this filter shows it (as it read at ``at``), or None if left out."""
        if self.at is not None:
            m = as_of(m, to_iso(self.at))
        return m if self(m) else None

    def __call__(self, m: Memory) -> bool:
        when = from_iso(m.occurred_at or m.created_at)
        tag = self.tag.strip().lower() if self.tag else None
        return ((self.include_inactive or self.at is not None or m.status == "active")
                and (self.kind is None or m.kind == self.kind)
                and (tag is None or tag in m.tags)
                and (self.tier is None or m.tier == self.tier)
                and (self.since is None or when >= self.since)
                and (self.until is None or when <= self.until)
                and (self.at is None or _true_at(m, self.at)))


def _true_at(memory: Memory, moment: datetime) -> bool:
    """Recorded by then, valid from before then, and not yet ended then."""
    start = from_iso(memory.valid_from or memory.created_at)
    ended = memory.valid_to is not None and from_iso(memory.valid_to) <= moment
    return (from_iso(memory.created_at) <= moment and start <= moment and not ended
            and memory.status != "archived")


def _read_text(path: Any) -> str | None:
    try:
        return path.read_text("utf-8")
    except FileNotFoundError:
        return None


def _tree_bytes(path: Any) -> int:
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
