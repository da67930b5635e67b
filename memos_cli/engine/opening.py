"""Opening a profile: unlock, lock, recover what a killed command left, check the store.

Every engine command that touches the store comes through ``locked`` (and most
through ``session``), so none can act on a store that a killed consolidation,
restore, reindex, write or key rotation left half-done. Writes are journalled
(``journal``) so a killed process leaves the store as it was before.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, Iterator, Sequence

from memos_cli.core import crypto
from memos_cli.core.atomic import write_atomic
from memos_cli.core.audit import Event
from memos_cli.core.errors import IntegrityError, StoreMismatchError, VersionError, WrongKeyError
from memos_cli.core.keys import Unlocked
from memos_cli.core.lock import store_lock
from memos_cli.core.records import RecordCodec
from memos_cli.engine.rotation import rotate_rows
from memos_cli.engine.state import STORE_FORMAT, ProfileState, read_text, store_meta
from memos_cli.core.store import ChromaStore

JOIN_HINT = (": run 'memos key export' on a machine that opens the store and "
             "'memos key import FILE' here")


@contextmanager
def session(s: ProfileState, write: bool,
            create: bool | None = None) -> Iterator[RecordCodec | None]:
    """Unlock, lock, open and repair the store; yields None for a profile with no store.

    ``create`` (default: ``write``) makes the key and store when there are none;
    ``write`` tells other processes afterwards that the store changed.
    """
    create = write if create is None else create
    with locked(s):
        if s.unlocked is None:
            refuse_foreign_store(s)
            if not create:
                yield None
                return
            s.unlocked = s.keys.create()
        codec = _open_store(s, create=create)
        if codec is None:
            yield None
            return
        if not write:
            yield codec
            return
        # Before writing, not after: a write that committed must not then fail (a full
        # disk), and others cannot look before we release the lock.
        s.bump_generation()
        row_writes = s.store.row_writes
        try:
            yield codec
        finally:
            if s.store.row_writes == row_writes:
                # No row changed (a memory already stored, an id not found): the list
                # index is as current as it was, else the next `list -n` would open
                # every memory (13 s at 100k).
                s.listed()


@contextmanager
def locked(s: ProfileState, unlock: bool = True) -> Iterator[None]:
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
        s.unlock()  # may prompt: done before taking the lock
    s.store.preload()  # importing Chroma takes a second: not while others wait
    with store_lock(s.paths.lock_file):
        s.refresh_if_stale()
        _recover_consolidation(s)
        _recover_restore(s)
        if unlock and s.unlock() is not None:  # again: a finished restore changed it
            _recover_store(s)
        yield


def _recover_store(s: ProfileState) -> None:
    """Finish or undo an interrupted reindex, write or key rotation (needs the key)."""
    assert s.unlocked is not None
    load_store_token(s)
    _recover_reindex(s)
    pending = s.paths.journal_file(s.profile).exists() or s.unlocked.next
    if pending and s.store.exists():
        check_store_key_only(s)
        _recover_journal(s)
        if s.unlocked.next is not None:
            rotate_rows(s)
            s.codec = None


def create_key(s: ProfileState, check_store: bool = True) -> Unlocked:
    """A new key for a profile that has none, unless memories are stored without it."""
    if check_store:
        refuse_foreign_store(s)
    return s.keys.create()


def warm(s: ProfileState, dim: int) -> None:
    """Unlock, and derive the vector rotation for ``dim``, before taking the lock:
    a passphrase prompt and a QR decomposition are not for other processes to wait on."""
    s.rotations_ready()
    if s.unlock() is not None:
        for key in s.unlocked_keys().each:
            key.rotation(dim)


def refuse_foreign_store(s: ProfileState) -> None:
    """A store with no key here is never opened or replaced by a new key: on a server it
    was made elsewhere (say how to join); locally its key file was lost or moved."""
    if not s.store.exists():
        return
    if s.store.remote is not None:
        raise WrongKeyError(f"profile {s.profile!r} on {s.store.remote.url} was made "
                            "with a key this machine does not have" + JOIN_HINT)
    raise WrongKeyError(f"profile {s.profile!r} has memories but its key file "
                        f"{s.keys.file} is missing: put it back (from a copy of "
                        f"{s.paths.keys_dir}), 'memos key import' an export of it, "
                        "'memos restore' a backup, or 'memos forget --all' to start afresh")


def _open_store(s: ProfileState, create: bool) -> RecordCodec | None:
    """The codec for the store (made if ``create``); recovery already ran (``locked``)."""
    assert s.unlocked is not None
    if s.codec is not None:
        return s.codec
    if not s.store.exists():
        if not create:
            return None
        s.store.create(store_meta(s.unlocked.current, s.embed_meta()))
        if s.store.remote is None:  # an empty store's list index: current from the start
            s.listing.rebuild(s.unlocked, s.generation, [], s.text_tag)
    meta = s.store.meta()
    _check_store(s, meta)
    s.codec = s.new_codec(meta)
    return s.codec


def load_store_token(s: ProfileState) -> None:
    """A server's token from the vault, unless the environment gave one (needs the key)."""
    remote = s.store.remote
    if remote is not None and remote.token is None and s.unlocked is not None:
        remote.token = s.vault().read(s.unlocked_keys()).get("store.token")


def _check_store(s: ProfileState, meta: dict[str, Any]) -> None:
    assert s.unlocked is not None
    if int(meta.get("memos_format", 0)) > STORE_FORMAT:
        raise VersionError("this store was written by a later version of memos: upgrade memos")
    key = s.unlocked.by_id(str(meta.get("key_id")))
    if key is None:
        elsewhere = s.store.remote is not None  # e.g. rotated by another machine
        raise WrongKeyError("this store was made with another key than the one in "
                            f"{s.keys.file}" + (JOIN_HINT if elsewhere else ""))
    try:
        crypto.unseal(key.key, crypto.b64d(str(meta["check"])), "check/" + key.key_id)
    except (IntegrityError, KeyError):
        # The key named by the store unwrapped, so it is the right one: the check
        # value itself was altered.
        raise IntegrityError("the store's check value failed its integrity check: "
                             "the store's metadata was altered") from None
    configured = s.configured_model()
    if meta.get("embed_model") != configured:
        raise StoreMismatchError(
            f"this store was built with the embedding model {meta.get('embed_model')!r} "
            f"but {configured!r} is configured: change it back, or run 'memos reindex'")


def check_store_key_only(s: ProfileState) -> None:
    """The store's format and key, whatever embedding model it was built with."""
    meta = s.store.meta()
    saved = meta.get("embed_model")
    meta["embed_model"] = s.configured_model()
    _check_store(s, meta)
    meta["embed_model"] = saved


def _recover_consolidation(s: ProfileState) -> None:
    if any(s.paths.data_dir.glob(".consolidation-*")):
        from memos_cli.engine import consolidation

        consolidation.recover(s)
        s.codec = None
        s.bump_generation()  # other processes must re-read the restored files


def _recover_restore(s: ProfileState) -> None:
    if s.paths.restore_marker(s.profile).exists():
        from memos_cli.engine import backup

        load_store_token(s)
        backup.recover(s)


def reindex_store(s: ProfileState) -> ChromaStore:
    """Where a reindex builds the new collection before swapping it in."""
    return s.store.sibling(s.profile + "-reindex")


def _recover_reindex(s: ProfileState) -> None:
    """Finish or undo a reindex that was interrupted."""
    temp = reindex_store(s)
    if not temp.exists():
        return
    if s.store.exists():
        temp.drop()  # died before the swap: the old store is intact
    else:
        temp.collection.modify(name=s.store.collection_name)  # died mid-swap
        s.store.reset()


# --- crash safety: the write journal --------------------------------------------------


@contextmanager
def journal(s: ProfileState, ids: Sequence[str], event: Event | None = None) -> Iterator[None]:
    """Rows ``ids`` are deleted at next open if we die inside the block: rows being
    added are rolled back, rows being forgotten are forgotten all the same. The audit
    ``event`` is recorded once the rows are gone, by us or by whoever recovers."""
    path = s.paths.journal_file(s.profile)
    doc: dict[str, Any] = {"version": 1, "add": list(ids)}
    if event is not None:
        doc["event"] = asdict(event)
    write_atomic(path, json.dumps(doc).encode())
    try:
        yield
    except BaseException:
        s.keywords = None  # it may list rows that are gone again: reload it
        s.store.scrub_delete(s.existing(ids), s.dim())
        s.record(event)
        path.unlink(missing_ok=True)
        raise
    s.record(event)
    path.unlink(missing_ok=True)


def _recover_journal(s: ProfileState) -> None:
    path = s.paths.journal_file(s.profile)
    text = read_text(path)
    if text is None:
        return
    try:
        doc = json.loads(text)
        ids, event = doc["add"], Event(**doc["event"]) if "event" in doc else None
    except (ValueError, KeyError, TypeError):
        ids, event = [], None
    s.store.scrub_delete(s.existing(ids), s.dim())
    s.listing.drop()  # it may list the rows just deleted (a forget's): not kept
    if event is not None and s.audit_log.read(s.unlocked_keys())[-1:] != [event]:
        s.record(event)  # (a process killed after recording it left it last)
    path.unlink(missing_ok=True)
    s.notice("notice: an interrupted " + ("forget was finished" if event
                                          else "write was rolled back"))
