"""Key administration: moving the key between machines, changing its passphrase,
rotating it, and the secrets sealed in the profile's vault."""

from __future__ import annotations

from typing import Any

from memos_cli.core.errors import IntegrityError, NotFoundError, UsageError, WrongKeyError
from memos_cli.core.keys import DataKey, Unlocked
from memos_cli.engine.opening import check_store_key_only, create_key, locked, refuse_foreign_store, session
from memos_cli.engine.rotation import reseal_side_files, rotate_rows
from memos_cli.engine.state import Progress, ProfileState


def export_key(s: ProfileState, passphrase: str) -> dict[str, Any]:
    """The profile's data key wrapped under ``passphrase``, for ``import_key`` elsewhere."""
    if not passphrase:
        raise UsageError("the export passphrase is empty")
    with session(s, write=False) as codec:
        if codec is None:
            raise NotFoundError("this profile has no key yet: nothing to export")
        return s.keys.export(s.unlocked_keys(), passphrase)


def import_key(s: ProfileState, exported: dict[str, Any], passphrase: str) -> None:
    """Join a store made elsewhere (a shared Chroma server) by adopting its key.

    A key this machine already has is replaced only if no store opens with it (an
    earlier ``config set`` of a secret made it); its vault is re-sealed, not lost.
    """
    with locked(s):
        unused = _unused_key(s)
        imported = s.keys.open_export(exported, passphrase)
        if unused is not None:  # re-sealed first: the old key still exists if we die here
            reseal_side_files(s, Unlocked(unused, imported))
        s.unlocked = s.keys.import_key(exported, passphrase, replace=unused is not None,
                                       opened=imported)
        s.audit("key changed", [])


def _unused_key(s: ProfileState) -> DataKey | None:
    """This profile's data key if it has one that opens no store; None if it has none.

    Raises if memories are stored under it: replacing it would orphan them.
    """
    if s.unlocked is None:
        return None
    if s.store.exists() and s.store.meta().get("key_id") == s.unlocked.current.key_id:
        raise UsageError(f"profile {s.profile!r} already has memories under its own key: "
                         "importing another would orphan them (use another --profile)")
    return s.unlocked.current


def set_secret(s: ProfileState, name: str, value: str | None) -> None:
    """Store (or with None, remove) a secret in the vault, sealed.

    Only the key is needed, not the store: a server's token is set before memos
    can reach the server.
    """
    with locked(s):
        if s.unlocked is None:
            # A server may not be reachable before its token is set: only a local
            # store is checked for a lost key.
            s.unlocked = create_key(s, check_store=s.store.remote is None)
        vault = s.vault()
        secrets_ = vault.read(s.unlocked_keys())
        if value is None:
            secrets_.pop(name, None)
        else:
            secrets_[name] = value
        vault.write(s.unlocked_keys(), secrets_)


def change_passphrase(s: ProfileState, new_passphrase: str) -> None:
    """Re-wrap the data key under ``new_passphrase``, proven against the store first."""
    if not new_passphrase:
        raise UsageError("the new passphrase is empty")
    with locked(s):
        unlocked = s.unlocked or create_key(s)
        s.unlocked = unlocked

        def proves(candidate: Unlocked) -> None:
            if s.store.exists():
                saved, s.unlocked = s.unlocked, candidate
                try:
                    check_store_key_only(s)
                except IntegrityError:
                    raise WrongKeyError("the new wrap does not open the store: "
                                        "the passphrase was not changed") from None
                finally:
                    s.unlocked = saved

        s.keys.set_passphrase(new_passphrase, unlocked, proves)
        s.audit("key changed", [])


def rotate_key(s: ProfileState, progress: Progress | None = None) -> int:
    """Re-encrypt every memory under a new data key; resumable after a crash."""
    with locked(s):
        if s.unlocked is None:
            refuse_foreign_store(s)
            raise NotFoundError("this profile has no key yet: nothing to rotate")
        if s.store.exists():
            check_store_key_only(s)
        s.unlocked = s.keys.begin_rotation(s.unlocked)
        count = rotate_rows(s, progress)
        s.codec = None
        s.bump_generation()
        return count
