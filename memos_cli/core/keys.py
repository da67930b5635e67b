"""The key store: one random data key per profile, wrapped, and where its wrap lives.

A profile's key file (``keys/<profile>.json``, mode 0600 in a 0700 folder) holds
the data key wrapped by a key-encryption key (KEK), and says where the KEK comes
from: a passphrase (Argon2id or scrypt, salt and cost stored beside the wrap), the
OS keyring (only a recommended, non-plaintext backend), or a random key file beside
it. During ``key rotate`` it also holds the next data key, so a crash half-way can
be resumed. This module never sees memory text and never prints.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from memos_cli.core import crypto
from memos_cli.core.atomic import write_atomic
from memos_cli.core.errors import (BadInputError, IntegrityError, UsageError, VersionError,
                              WrongKeyError)
from memos_cli.core.failpoint import failpoint
from memos_cli.core.passphrase import given, profile_passphrase
from memos_cli.core.paths import Paths, ensure_private_dir
from memos_cli.core.timeparse import now_utc, to_iso

KEYS_FORMAT = "memos-keys"
EXPORT_FORMAT = "memos-key-export"
KEYS_VERSION = 1
KEYRING_SERVICE = "memos"
MODES = ("passphrase", "keyring", "keyfile")

PassphraseSource = Callable[[str], "str | None"]  # called with a prompt text


@dataclass
class DataKey:
    """An unwrapped data key and what is derived from it (kept in memory only)."""

    key_id: str
    key: bytes
    _rotations: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def has_rotation(self, dim: int) -> bool:
        """Whether the rotation for ``dim`` is derived already (``rotation`` is then free)."""
        return dim in self._rotations

    def rotation(self, dim: int) -> np.ndarray:
        if dim not in self._rotations:
            self._rotations[dim] = crypto.rotation_matrix(self.key, dim)
        return self._rotations[dim]


@dataclass
class Unlocked:
    """The keys a store needs: the current one and, mid-rotation, the next one."""

    current: DataKey
    next: DataKey | None = None

    @property
    def each(self) -> list[DataKey]:
        """The keys there are: the current one, then the next one mid-rotation."""
        return [key for key in (self.current, self.next) if key is not None]

    def by_id(self, key_id: str) -> DataKey | None:
        return next((key for key in self.each if key.key_id == key_id), None)




class KeyStore:
    """Creates, unlocks, re-wraps and rotates one profile's data key."""

    def __init__(self, paths: Paths, profile: str, *,
                 passphrase: PassphraseSource = profile_passphrase,
                 new_passphrase: PassphraseSource | None = None,
                 use_keyring: bool | None = None,
                 notice: Callable[[str], None] = lambda _msg: None) -> None:
        """``passphrase`` unlocks a passphrase-protected key; ``new_passphrase`` (default:
        the same source) gives a new key's passphrase, or None for keyring or key file."""
        self.paths, self.profile = paths, profile
        self._passphrase, self._notice = passphrase, notice
        self._new_passphrase = new_passphrase or passphrase
        self._told_unused_passphrase = False
        if use_keyring is None:
            use_keyring = os.environ.get("MEMOS_KEYRING", "1") not in ("0", "off", "no")
        self._use_keyring = use_keyring
        self._kek: bytes | None = None  # kept after unlock: rotation re-wraps with it

    @property
    def file(self):
        return self.paths.key_file(self.profile)

    def exists(self) -> bool:
        return self.file.exists()

    # --- reading and writing the key file --------------------------------------

    def _read(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.file.read_text("utf-8"))
        except FileNotFoundError:
            raise WrongKeyError(f"no key for profile {self.profile!r}") from None
        except (OSError, ValueError):
            raise IntegrityError(f"the key file {self.file} is unreadable or corrupt"
                                 + RESTORE_HINT) from None
        if not isinstance(doc, dict) or doc.get("format") != KEYS_FORMAT:
            raise IntegrityError(f"{self.file} is not a memos key file" + RESTORE_HINT)
        version = doc.get("version")
        if not isinstance(version, int):
            raise IntegrityError(f"the key file {self.file} is damaged" + RESTORE_HINT)
        if version > KEYS_VERSION:
            raise VersionError(f"{self.file} was written by a later version of memos: upgrade memos")
        if not _well_formed(doc):
            raise IntegrityError(f"the key file {self.file} is damaged" + RESTORE_HINT)
        return doc

    def _write(self, doc: dict[str, Any]) -> None:
        ensure_private_dir(self.paths.keys_dir)
        write_atomic(self.file, _encode(doc), mode=0o600)

    # --- creating ----------------------------------------------------------------

    def create(self, existing: DataKey | None = None) -> Unlocked:
        """Make a new data key (or adopt ``existing``, from ``key import``) and wrap it
        with the best KEK source available."""
        key = existing or DataKey(secrets.token_hex(8), crypto.random_key())
        doc = self._new_doc(key)
        self._write(doc)
        return Unlocked(key)

    def wrap(self, key: DataKey) -> bytes:
        """A key file's content for ``key``, to be put in place later (by ``restore``).

        An unlocked profile's KEK is kept, and so are its passphrase, keyring entry or
        key file; a profile without a key gets the best KEK source available.
        """
        if self._kek is None or not self.exists():
            return _encode(self._new_doc(key))
        doc = self._read()
        doc = {name: doc[name] for name in ("format", "version", "profile", "mode", "kdf")
               if name in doc}
        doc.update(key_id=key.key_id, created_at=to_iso(now_utc()),
                   wrapped=crypto.b64e(crypto.wrap_key(self._kek, key.key, key.key_id)))
        return _encode(doc)

    def _new_doc(self, key: DataKey) -> dict[str, Any]:
        passphrase = self._new_passphrase(
            f"New passphrase for memos profile '{self.profile}' (empty: none): ")
        doc: dict[str, Any] = {"format": KEYS_FORMAT, "version": KEYS_VERSION,
                               "profile": self.profile, "key_id": key.key_id,
                               "created_at": to_iso(now_utc())}
        if passphrase:
            kek = self._passphrase_wrap_fields(doc, passphrase)
        elif self._use_keyring and _usable_keyring() is not None:
            kek = crypto.random_key()
            self._keyring_set(kek)
            doc["mode"] = "keyring"
        else:
            kek = self._keyfile_create()
            doc["mode"] = "keyfile"
        doc["wrapped"] = crypto.b64e(crypto.wrap_key(kek, key.key, key.key_id))
        self._kek = kek
        return doc

    def _passphrase_wrap_fields(self, doc: dict[str, Any], passphrase: str) -> bytes:
        params = crypto.new_kdf_params()
        doc["mode"], doc["kdf"] = "passphrase", params.to_json()
        doc.pop("keyfile", None)
        return crypto.derive_kek(passphrase, params)

    def _keyfile_create(self) -> bytes:
        secret_file = self.paths.secret_file(self.profile)
        if secret_file.exists() and not self.exists():  # its key file went missing: it may
            # be put back, and then needs this secret
            raise WrongKeyError(f"{secret_file} exists but its key file {self.file} is missing: "
                                "put the key file back (from a backup), or move the secret "
                                "away to start this profile afresh")
        kek = crypto.random_key()
        ensure_private_dir(self.paths.keys_dir)
        secret = json.dumps({"kek": crypto.b64e(kek)}).encode()
        write_atomic(self.paths.secret_file(self.profile), secret, mode=0o600)
        self._notice(
            "warning: no passphrase (MEMOS_PASSPHRASE) and no secure OS keyring: the key "
            f"lies in {self.paths.secret_file(self.profile)}, beside your data. "
            "Run 'memos key passphrase' to protect it with a passphrase."
        )
        return kek

    # --- unlocking ----------------------------------------------------------------

    def unlock(self) -> Unlocked:
        doc = self._read()
        key_id = doc["key_id"]
        self._tell_if_passphrase_unused(doc["mode"])
        kek = self._kek_for(doc)
        if doc["mode"] != "keyfile":  # left by a passphrase change killed before its cleanup
            _shred(self.paths.secret_file(self.profile))
        current = DataKey(key_id, crypto.unwrap_key(kek, crypto.b64d(doc["wrapped"]), key_id))
        upcoming = None
        if "next" in doc:
            nxt = doc["next"]
            upcoming = DataKey(nxt["key_id"], crypto.unwrap_key(
                kek, crypto.b64d(nxt["wrapped"]), nxt["key_id"]))
        self._kek = kek
        return Unlocked(current, upcoming)

    def _tell_if_passphrase_unused(self, mode: str) -> None:
        """A passphrase in the environment that this profile does not use is said once:
        silently ignoring it would let a wrong one look right."""
        if mode != "passphrase" and given("MEMOS_PASSPHRASE") \
                and not self._told_unused_passphrase:
            self._told_unused_passphrase = True
            where = "the OS keyring" if mode == "keyring" else "a key file"
            self._notice(f"notice: MEMOS_PASSPHRASE is ignored: the key of profile "
                         f"{self.profile!r} is protected by {where} "
                         "(set a passphrase with 'memos key passphrase')")

    def _kek_for(self, doc: dict[str, Any]) -> bytes:
        mode = doc.get("mode")
        if mode == "passphrase":
            passphrase = self._passphrase(f"Passphrase for memos profile '{self.profile}': ")
            if not passphrase:
                raise WrongKeyError("this store is protected by a passphrase: set "
                                    "MEMOS_PASSPHRASE (or _FD, _COMMAND) or run memos on a "
                                    "terminal")
            try:
                params = crypto.KdfParams.from_json(doc["kdf"])
                return crypto.derive_kek(passphrase, params)
            except (ValueError, TypeError, KeyError, AttributeError):
                raise IntegrityError(f"the key file {self.file} has damaged key-derivation "
                                     "parameters" + RESTORE_HINT) from None
        if mode == "keyring":
            return self._keyring_get()
        if mode == "keyfile":
            return self._keyfile_read()
        raise VersionError(f"unknown key mode {mode!r} in {self.file}: upgrade memos")

    def _keyfile_read(self) -> bytes:
        path = self.paths.secret_file(self.profile)
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            raise WrongKeyError(f"the key secret {path} is missing: put it back from a "
                                "backup of the keys folder") from None
        except (OSError, ValueError):
            raise IntegrityError(f"the key secret {path} is unreadable" + RESTORE_HINT) from None
        try:
            kek = crypto.b64d(json.loads(text)["kek"])
        except (ValueError, TypeError, KeyError, AttributeError, IntegrityError):
            kek = b""
        if len(kek) != crypto.KEY_BYTES:
            raise IntegrityError(f"the key secret {path} is damaged" + RESTORE_HINT)
        return kek

    def _keyring_get(self) -> bytes:
        backend = _usable_keyring()
        value = None
        if backend is not None:
            try:
                value = backend.get_password(KEYRING_SERVICE, self.profile)
            except Exception:  # keyring backends raise their own error types
                value = None
        if not value:
            raise WrongKeyError("the key for this store is not in the OS keyring "
                                "(another user, machine, or a locked keyring?)")
        try:
            kek = crypto.b64d(value)
        except IntegrityError:
            kek = b""
        if len(kek) != crypto.KEY_BYTES:
            raise IntegrityError("the key in the OS keyring for this profile is damaged")
        return kek

    def _keyring_set(self, kek: bytes) -> None:
        backend = _usable_keyring()
        assert backend is not None
        backend.set_password(KEYRING_SERVICE, self.profile, crypto.b64e(kek))

    def _keyring_delete(self) -> None:
        backend = _usable_keyring()
        if backend is None:
            return
        try:
            backend.delete_password(KEYRING_SERVICE, self.profile)
        except Exception:  # already gone
            pass

    # --- changing the wrap ----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        doc = self._read()
        info: dict[str, Any] = {"profile": self.profile, "mode": doc["mode"],
                                "key_id": doc["key_id"], "created_at": doc.get("created_at"),
                                "key_file": str(self.file),
                                "rotation_pending": "next" in doc}
        if doc["mode"] == "passphrase":
            info["kdf"] = doc["kdf"]["name"]
        return info

    def set_passphrase(self, new_passphrase: str, unlocked: Unlocked,
                       proves_store: Callable[[Unlocked], None]) -> None:
        """Re-wrap the data key(s) under a new passphrase.

        The new wrap is unwrapped again and ``proves_store`` must open the store
        with it before the key file is replaced; the old wrap (keyring entry or
        key file) is removed only after that.
        """
        doc = self._read()
        old_mode, key_id = doc["mode"], doc["key_id"]
        new_doc = {k: v for k, v in doc.items() if k not in ("kdf", "next", "wrapped")}
        kek = self._passphrase_wrap_fields(new_doc, new_passphrase)
        new_doc["wrapped"] = crypto.b64e(crypto.wrap_key(kek, unlocked.current.key, key_id))
        if unlocked.next is not None:
            new_doc["next"] = {"key_id": unlocked.next.key_id, "wrapped": crypto.b64e(
                crypto.wrap_key(kek, unlocked.next.key, unlocked.next.key_id))}
        proof = crypto.unwrap_key(kek, crypto.b64d(new_doc["wrapped"]), key_id)
        proves_store(Unlocked(DataKey(key_id, proof), unlocked.next))
        failpoint("passphrase:proven")
        self._write(new_doc)
        self._kek = kek
        failpoint("passphrase:written")
        if old_mode == "keyring":
            self._keyring_delete()
        elif old_mode == "keyfile":
            _shred(self.paths.secret_file(self.profile))

    def begin_rotation(self, unlocked: Unlocked) -> Unlocked:
        """Record a next data key beside the current one (idempotent if one exists)."""
        if unlocked.next is not None:
            return unlocked
        doc = self._read()
        assert self._kek is not None, "unlock before rotating"
        fresh = DataKey(secrets.token_hex(8), crypto.random_key())
        doc["next"] = {"key_id": fresh.key_id,
                       "wrapped": crypto.b64e(crypto.wrap_key(self._kek, fresh.key, fresh.key_id))}
        self._write(doc)
        failpoint("rotate:begun")
        return Unlocked(unlocked.current, fresh)

    def finish_rotation(self, unlocked: Unlocked) -> Unlocked:
        """Make the next key current; the old data key is gone from disk afterwards."""
        doc = self._read()
        nxt = doc.pop("next")
        # The KEK is unchanged, so the keyring entry or key file stays as it is.
        doc["key_id"], doc["wrapped"] = nxt["key_id"], nxt["wrapped"]
        self._write(doc)
        assert unlocked.next is not None
        return Unlocked(unlocked.next)

    def export(self, unlocked: Unlocked, passphrase: str) -> dict[str, Any]:
        """The data key, wrapped under ``passphrase`` alone, for another machine to import."""
        if unlocked.next is not None:
            raise UsageError("a key rotation is unfinished: run any memos command first")
        params = crypto.new_kdf_params()
        kek = crypto.derive_kek(passphrase, params)
        key = unlocked.current
        return {"format": EXPORT_FORMAT, "version": KEYS_VERSION, "profile": self.profile,
                "key_id": key.key_id, "kdf": params.to_json(),
                "wrapped": crypto.b64e(crypto.wrap_key(kek, key.key, key.key_id))}

    def import_key(self, doc: dict[str, Any], passphrase: str, replace: bool = False,
                   opened: DataKey | None = None) -> Unlocked:
        """Adopt an exported data key; the profile must have no key yet, unless ``replace``.
        ``opened`` is the key ``open_export`` already took out of ``doc``."""
        if self.exists() and not replace:
            raise UsageError(f"profile {self.profile!r} already has a key: importing another "
                             "would orphan its memories (use another --profile)")
        return self.create(opened or self.open_export(doc, passphrase))

    @staticmethod
    def open_export(doc: dict[str, Any], passphrase: str) -> DataKey:
        """The data key inside a key export (``export``), checked."""
        if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
            raise BadInputError("not a memos key export")
        if not isinstance(doc.get("version"), int) or not isinstance(doc.get("key_id"), str):
            raise BadInputError("this key export is damaged")
        if doc["version"] > KEYS_VERSION:
            raise VersionError("this key export was written by a later memos: upgrade memos")
        try:
            kek = crypto.derive_kek(passphrase, crypto.KdfParams.from_json(doc["kdf"]))
            return DataKey(doc["key_id"], crypto.unwrap_key(kek, crypto.b64d(doc["wrapped"]),
                                                            doc["key_id"]))
        except (ValueError, TypeError, KeyError, AttributeError, IntegrityError):
            raise BadInputError("this key export is damaged") from None

    def destroy(self) -> None:
        """Remove every trace of this profile's key (used by ``forget --all``)."""
        if self.exists():
            try:
                doc = self._read()
                if doc.get("mode") == "keyring":
                    self._keyring_delete()
            except (WrongKeyError, IntegrityError, VersionError):
                pass  # a damaged key file is shredded all the same
        for path in self.paths.profile_files(self.profile).key_files:
            _shred(path)
        self._kek = None


RESTORE_HINT = ": put it back from a backup of the keys folder (see SECURITY.md)"


def _well_formed(doc: dict[str, Any]) -> bool:
    """Whether a key file (format and version already checked) has every field it needs,
    each of the right type: a damaged one is an integrity error, never a crash."""
    wraps = [doc, *([doc["next"]] if "next" in doc else [])]
    if not all(isinstance(w, dict) and isinstance(w.get("key_id"), str)
               and isinstance(w.get("wrapped"), str) for w in wraps):
        return False
    if doc.get("mode") == "passphrase":
        kdf = doc.get("kdf")
        return isinstance(kdf, dict) and isinstance(kdf.get("name"), str) \
            and isinstance(kdf.get("salt"), str)
    return isinstance(doc.get("mode"), str)


def _encode(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=1) + "\n").encode()


def _shred(path) -> None:
    """Overwrite then unlink a small secret file (best effort on copy-on-write disks)."""
    try:
        size = path.stat().st_size
        with open(path, "r+b") as fh:
            fh.write(os.urandom(size))
            fh.flush()
            os.fsync(fh.fileno())
        path.unlink()
    except FileNotFoundError:
        pass


def _usable_keyring():
    """The OS keyring backend if it is a recommended, non-plaintext one; else None."""
    try:
        import keyring
        from keyring.backends import chainer
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
        candidates = backend.backends if isinstance(backend, chainer.ChainerBackend) else [backend]
        for candidate in candidates:
            name = f"{type(candidate).__module__}.{type(candidate).__name__}".lower()
            if candidate.priority >= 1 and "plaintext" not in name and "null" not in name \
                    and ".fail." not in name:
                return candidate
    except Exception:  # a backend whose priority check itself fails is not usable
        return None
    return None
