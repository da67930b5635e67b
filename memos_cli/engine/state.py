"""One profile as the engine holds it open: its paths, keys, store, side files and caches.

``ProfileState`` is what every job of the engine (opening, writing, forgetting,
recall, key administration, reindex, reading) works on; each job is a module of
functions over it, and ``MemoryEngine`` is the facade that holds one. Only the
engine's own modules use it; other modules go through ``MemoryEngine`` and its
``UnitOfWork``.
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import replace
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np

from memos_cli.core import crypto
from memos_cli.core.atomic import write_atomic
from memos_cli.core.audit import AuditLog, Event
from memos_cli.core.config import EmbeddingSettings, embedding_settings, recall_floor, store_settings
from memos_cli.core.errors import IntegrityError
from memos_cli.core.keys import DataKey, KeyStore, PassphraseSource, Unlocked
from memos_cli.search.keyword import KeywordIndex
from memos_cli.core.listing import ListIndex
from memos_cli.core.memory import Memory
from memos_cli.core.paths import Paths, resolve_paths, resolve_profile
from memos_cli.core.records import RecordCodec
from memos_cli.core.store import ChromaStore, Remote
from memos_cli.core.timeparse import now_utc, to_iso
from memos_cli.core.usage import UsageLog
from memos_cli.core.vault import Vault

STORE_FORMAT = 1
Progress = Callable[[int, int], None]  # (done, total)


class Profile(Protocol):
    """What work on a profile's files as a whole needs (backup, restore, consolidation's
    snapshot, and their recovery): both ``MemoryEngine`` and ``ProfileState`` offer it."""

    @property
    def paths(self) -> Paths: ...
    @property
    def profile(self) -> str: ...
    @property
    def keys(self) -> KeyStore: ...
    @property
    def store(self) -> ChromaStore: ...
    @property
    def usage(self) -> UsageLog: ...
    def notice(self, text: str) -> None: ...
    def adopt_keys(self, unlocked: Unlocked | None) -> None: ...
    def drop_caches(self) -> None: ...


class ProfileState:
    """One profile's open state, shared by the engine's jobs."""

    def __init__(self, profile: str | None = None, *, paths: Paths | None = None,
                 embedder: Any = None, passphrase: PassphraseSource,
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
        self.unlocked: Unlocked | None = None
        self.codec: RecordCodec | None = None
        self.keywords: KeywordIndex | None = None
        # The saved index as read before taking the lock, with the file's identity, for
        # the first locked use to take over if no write has replaced the file meanwhile.
        self.read_ahead: tuple[tuple[object, ...], KeywordIndex] | None = None
        self.generation: str | None = None
        self.damaged: list[str] = []  # ids whose ciphertext failed its integrity check
        # What this engine's last add left the counter at (see consolidation.due).
        self.new_since_consolidation: int | None = None
        self.cause = "library"  # what the audit trail names as the cause of changes
        self.audit_log = AuditLog(self.paths.audit_file(self.profile), f"audit/{self.profile}")
        self.usage = UsageLog(self.paths.usage_file(self.profile), f"usage/{self.profile}")
        self.listing = ListIndex(self.paths.listing_file(self.profile),
                                 self.paths.listing_delta_file(self.profile),
                                 f"listing/{self.profile}")
        self.generation_before: str | None = None  # before this process's last write began
        self._rotating: threading.Thread | None = None  # see start_embedder

    # --- the embedder ---------------------------------------------------------------------

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            self._embedder = _shared_embedder(self._embedding_settings())
        return self._embedder

    def start_embedder(self) -> None:
        """Start in the background what a command that embeds needs and no other process
        waits on: the embedding model (``LocalMiniLM.prepare``) and the key's vector
        rotation (a QR decomposition, which numpy runs without the GIL), while Chroma is
        imported (0.5 s, under the GIL). Unlocking comes first: a passphrase is asked for
        before anything slow starts."""
        prepare = getattr(self.embedder, "prepare", None)
        if prepare is not None:
            prepare()
        dim = int(self.embedder.dim or 0)  # (an endpoint's is known after its first reply)
        if dim and self._rotating is None and self.unlock() is not None:
            keys = [k for k in self.unlocked_keys().each if not k.has_rotation(dim)]
            if keys:  # (a long-lived engine has them: no thread, no wait for the GIL)
                self._rotating = threading.Thread(target=_rotations, args=(keys, dim),
                                                  name="memos-rotation")
                self._rotating.start()
        self.store.preload()

    def rotations_ready(self) -> None:
        """Wait for the rotation ``start_embedder`` began, if any."""
        if self._rotating is not None:
            self._rotating.join()
            self._rotating = None

    def _embedding_settings(self) -> EmbeddingSettings:
        """The configured embedder; an endpoint's API key from the environment, else from
        the vault (``config set embedding.api_key``), else OPENAI_API_KEY."""
        settings = embedding_settings(self.paths)
        if settings.model.startswith("openai:") and not os.environ.get("MEMOS_EMBED_API_KEY"):
            stored = self.secret("embedding.api_key")
            if stored:
                settings = replace(settings, api_key=stored)
        return settings

    def configured_model(self) -> str:
        return self.embedder.model_id  # cheap: embedders load their model on first use

    def embed_meta(self) -> dict[str, Any]:
        return {"embed_model": self.embedder.model_id, "embed_dim": int(self.embedder.dim or 0)}

    def embed_batched(self, texts: list[str], progress: Progress | None,
                      step: int = 256) -> np.ndarray:
        parts = []
        for start in range(0, len(texts), step):
            parts.append(self.embedder.embed(texts[start:start + step]))
            if progress:
                progress(min(start + step, len(texts)), len(texts))
        if not parts:
            return np.zeros((0, int(self.embedder.dim or 1)), dtype=np.float32)
        return np.vstack(parts)

    # --- keys and caches --------------------------------------------------------------------

    def unlock(self) -> Unlocked | None:
        """Unlock the profile's key if it has one and it is not unlocked yet (this may
        ask for the passphrase); None for a profile with no key."""
        if self.unlocked is None and self.keys.exists():
            self.unlocked = self.keys.unlock()
        return self.unlocked

    def unlocked_keys(self) -> Unlocked:
        """The unlocked keys: side files open with the key they name, and new ones are
        sealed under the next key mid-rotation, as rows are."""
        assert self.unlocked is not None
        return self.unlocked

    def adopt_keys(self, unlocked: Unlocked | None) -> None:
        """Use ``unlocked`` from now on (a restore brought another key), dropping every
        cache made under the previous one."""
        self.unlocked = unlocked
        self.drop_caches()

    def drop_caches(self) -> None:
        """Forget the codec and keyword index (the files under them were replaced)."""
        self.codec = self.keywords = None

    def notice(self, text: str) -> None:
        """Tell the user something on the side (stderr in the CLI, ``notices`` otherwise)."""
        self._notice(text)

    def new_codec(self, meta: dict[str, Any] | None = None) -> RecordCodec:
        assert self.unlocked is not None
        meta = self.store.meta() if meta is None else meta
        return RecordCodec(self.unlocked, vector_tags=bool(meta.get("vector_tags")))

    def vault(self) -> Vault:
        return Vault(self.paths.vault_file(self.profile), self.profile)

    def secret(self, name: str) -> str | None:
        """A secret from the profile's vault (None if unset or no profile yet)."""
        if self.unlock() is None:
            return None
        return self.vault().read(self.unlocked_keys()).get(name)

    @property
    def keyword_context(self) -> str:
        return f"keywords/{self.profile}"

    # --- other processes' writes ------------------------------------------------------------

    def refresh_if_stale(self) -> None:
        """Notice writes by other engines or processes since we last looked.

        Two caches can go stale: this engine's (codec, keyword index, collection
        handle), and Chroma's own client, which is shared by the whole process.
        """
        current = read_text(self.paths.data_dir / "store.gen")
        if self.generation is not None and current != self.generation:
            self.store.disconnect()
            self.codec = None
            self.keywords = None
            self.usage.reset()
            self.listing.reset()
        shared = str(self.paths.chroma_dir)
        if _SEEN_GENERATION.get(shared, current) != current:
            self.store.reset()  # another process wrote through its own Chroma client
        _SEEN_GENERATION[shared] = current
        self.generation = current

    def listed(self, **change: Any) -> None:
        """Keep the list index current through a write of this process (see listing.py):
        ``added``, ``updated`` or ``removed`` memories, or none (a write that changed no row)."""
        if self.store.remote is None:
            self.listing.changed(self.unlocked_keys(), self.generation_before, self.generation,
                                 tag=self.text_tag, **change)

    def text_tag(self, memory: Memory) -> str:
        """The keyed hash of a memory's text that its row carries (exact duplicates)."""
        assert self.codec is not None, "tags are taken inside a session"
        return self.codec.text_tag(memory.text)

    def bump_generation(self) -> None:
        self.generation_before = self.generation
        token = secrets.token_hex(8)
        write_atomic(self.paths.data_dir / "store.gen", token.encode())
        self.generation = _SEEN_GENERATION[str(self.paths.chroma_dir)] = token

    # --- rows and the audit trail -----------------------------------------------------------

    def open_rows(self, codec: RecordCodec, rows: Iterable[Any],
                  with_usage: bool = True) -> Iterator[tuple[Any, Memory]]:
        """Decrypt rows; ``with_usage`` adds recorded recalls (for reading, not rewriting)."""
        key = self.unlocked_keys()
        for row in rows:
            try:
                memory = codec.open(row)
            except IntegrityError:
                if row.id not in self.damaged:
                    self.damaged.append(row.id)
                continue
            yield row, (self.usage.apply(key, memory) if with_usage else memory)

    def existing(self, ids: Sequence[str]) -> list[str]:
        return [row.id for row in self.store.get(list(ids))]

    def dim(self) -> int:
        return int(self.store.meta().get("embed_dim") or self.embedder.dim)

    def audit(self, action: str, ids: list[str], count: int = 0) -> None:
        self.audit_log.append(self.unlocked_keys(), [self.event(action, ids, count)])

    def event(self, action: str, ids: list[str], count: int = 0) -> Event:
        return Event(to_iso(now_utc()), action, list(ids), self.cause, count or len(ids))

    def record(self, event: Event | None) -> None:
        if event is not None:
            self.audit_log.append(self.unlocked_keys(), [event])


def store_meta(key: DataKey, embed: dict[str, Any]) -> dict[str, Any]:
    """A new store's metadata: its format, the key it is sealed under, and a check value."""
    check = crypto.seal(key.key, b"memos-store", "check/" + key.key_id)
    return {"memos_format": STORE_FORMAT, "key_id": key.key_id,
            "check": crypto.b64e(check), "vector_tags": 1, **embed}


def read_text(path: Any) -> str | None:
    try:
        return path.read_text("utf-8")
    except FileNotFoundError:
        return None


_EMBEDDERS: dict[tuple, Any] = {}
# The store generation this process's Chroma client has seen, per Chroma folder.
_SEEN_GENERATION: dict[str, str | None] = {}


def _rotations(keys: list[DataKey], dim: int) -> None:
    for key in keys:
        key.rotation(dim)  # cached on the key


def _shared_embedder(settings: EmbeddingSettings) -> Any:
    """One embedder per configuration per process, so the model loads once."""
    from memos_cli.search.embedding import make_embedder

    key = (settings.model, settings.base_url, settings.api_key, settings.timeout)
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = make_embedder(settings.model, base_url=settings.base_url,
                                        api_key=settings.api_key, timeout=settings.timeout)
    return _EMBEDDERS[key]
