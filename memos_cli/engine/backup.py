"""Backup and restore: one encrypted, integrity-checked, streamable file per profile.

The file is safe to keep anywhere (a cloud folder included): its content is sealed
under a random content key, and both that key and the profile's data key are
wrapped by a key derived from a backup passphrase (Argon2id or scrypt, as for the
store), so a new machine needs only the file and the passphrase. Layout: magic, a
plaintext header (format version, KDF parameters, wrapped keys; no memory data),
then length-prefixed sealed chunks, each bound to the header and to its position,
the last one an end marker with the counts. A flipped byte anywhere, a truncation,
or reordered chunks fail the check. Neither side holds more than one chunk in memory.

Restore is all or nothing. It reads the file twice: first to check every chunk,
then to build the profile beside the old one (a staging collection, and files named
``*.restore``); then it swaps them in with idempotent steps recorded by a marker
file, so a crash at any point leaves the old profile or the new one, and the next
memos command finishes or undoes the swap. This module never prints and never asks
for a passphrase.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import struct
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from memos_cli.core import crypto
from memos_cli.core.atomic import write_atomic
from memos_cli.core.audit import AuditLog
from memos_cli.core.errors import (BadInputError, IntegrityError, UsageError, VersionError,
                              WrongKeyError)
from memos_cli.core.keys import DataKey, Unlocked
from memos_cli.core.paths import ensure_private_dir
from memos_cli.core.usage import UsageLog
from memos_cli.core.vault import Vault

if TYPE_CHECKING:
    from memos_cli.engine import MemoryEngine
    from memos_cli.engine.state import Profile
    from memos_cli.core.store import ChromaStore

MAGIC = b"MEMOSBAK"
BACKUP_VERSION = 1
MARKER_VERSION = 1
ROWS_PER_CHUNK = 500
STAGED = ".restore"  # suffix of the staging collection's profile name and of staged files
Progress = Callable[[int, int], None]


def write_backup(engine: "MemoryEngine", target: Path, passphrase: str,
                 progress: Progress | None = None) -> int:
    """Write the whole profile to ``target`` (atomically); returns the number of memories."""
    if not passphrase:
        raise UsageError("the backup passphrase is empty")
    with engine.unit(write=False) as work:
        if work is None:
            raise UsageError("this profile is empty: nothing to back up")
        unlocked = work.keys
        assert unlocked.next is None  # opening finished any rotation
        total = engine.store.count()
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), 0o600)
                _write(engine, out, unlocked.current, passphrase, total, progress)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return total


def _write(engine: "MemoryEngine", out: IO[bytes], key: DataKey, passphrase: str,
           total: int, progress: Progress | None) -> None:
    params = crypto.new_kdf_params()
    kek = crypto.derive_kek(passphrase, params)
    content_key, backup_id = crypto.random_key(), secrets.token_hex(8)
    fields = {
        "version": BACKUP_VERSION, "backup_id": backup_id, "profile": engine.profile,
        "kdf": params.to_json(), "key_id": key.key_id,
        "data_key": crypto.b64e(crypto.seal(kek, key.key, f"backup/{backup_id}/data-key")),
        "content_key": crypto.b64e(crypto.seal(kek, content_key, f"backup/{backup_id}/content")),
    }
    header = json.dumps({**fields, "digest": _digest(fields)}).encode()
    out.write(MAGIC + struct.pack(">I", len(header)) + header)
    writer = _ChunkWriter(out, content_key, backup_id, header)
    writer.put({"kind": "meta", "meta": engine.store.meta()})
    batch, done = [], 0
    for row in engine.store.scan(with_vectors=True):
        batch.append({"id": row.id, "meta": row.meta,
                      "vector": crypto.b64e(np.asarray(row.vector, dtype="<f4").tobytes())})
        if len(batch) == ROWS_PER_CHUNK:
            done += len(batch)
            writer.put({"kind": "rows", "rows": batch})
            batch = []
            if progress:
                progress(done, total)
    if batch:
        writer.put({"kind": "rows", "rows": batch})
    for name, path in _side_files(engine).items():
        if path.exists():
            writer.put({"kind": "file", "name": name, "data": crypto.b64e(path.read_bytes())})
    writer.put({"kind": "end", "rows": total, "chunks": writer.count + 1})


class _ChunkWriter:
    def __init__(self, out: IO[bytes], key: bytes, backup_id: str, header: bytes) -> None:
        self.out, self.key, self.count = out, key, 0
        self.binding = f"backup/{backup_id}/{hashlib.sha256(header).hexdigest()}"

    def put(self, payload: dict[str, Any]) -> None:
        blob = crypto.seal(self.key, json.dumps(payload).encode(), f"{self.binding}/{self.count}")
        self.out.write(struct.pack(">I", len(blob)) + blob)
        self.count += 1


def _side_files(engine: "Profile") -> dict[str, Path]:
    """Sealed files that belong to the profile besides the rows (the keyword index is
    left out: it is rebuilt from the memories)."""
    return engine.paths.profile_files(engine.profile).backed_up


# --- reading --------------------------------------------------------------------------------


class Opened:
    """A backup whose header and keys checked out; ``chunks()`` streams its content."""

    def __init__(self, source: Path, passphrase: str) -> None:
        self.source, self.size = source, source.stat().st_size
        with open(source, "rb") as handle:
            self.header = _read_header(handle)
            self.offset = handle.tell()
        doc = _parse_header(self.header)
        kek = crypto.derive_kek(passphrase, crypto.KdfParams.from_json(doc["kdf"]))
        backup_id = doc["backup_id"]
        try:
            self.key = DataKey(doc["key_id"], crypto.unwrap_key_with_context(
                kek, crypto.b64d(doc["data_key"]), f"backup/{backup_id}/data-key"))
            self._content_key = crypto.unwrap_key_with_context(
                kek, crypto.b64d(doc["content_key"]), f"backup/{backup_id}/content")
        except WrongKeyError:
            raise WrongKeyError("wrong backup passphrase: it is the one given when the "
                                "backup was made (MEMOS_BACKUP_PASSPHRASE)") from None
        self.profile = str(doc.get("profile", ""))
        self._binding = f"backup/{backup_id}/{hashlib.sha256(self.header).hexdigest()}"

    def chunks(self, progress: Progress | None = None) -> Iterator[dict[str, Any]]:
        """Every chunk, checked, in order; raises IntegrityError at the first bad byte."""
        with open(self.source, "rb") as handle:
            handle.seek(self.offset)
            number, ended = 0, False
            while prefix := handle.read(4):
                if ended or len(prefix) < 4:
                    raise IntegrityError("the backup has bytes after its end, or is cut short")
                (length,) = struct.unpack(">I", prefix)
                if length > self.size - handle.tell():  # never read (allocate) past the end
                    raise IntegrityError("the backup is cut short")
                blob = handle.read(length)
                chunk = json.loads(crypto.unseal(self._content_key, blob,
                                                 f"{self._binding}/{number}"))
                number += 1
                ended = chunk.get("kind") == "end"
                if ended and chunk.get("chunks") != number:
                    raise IntegrityError("the backup's chunks do not add up")
                if progress:
                    progress(handle.tell(), self.size)
                yield chunk
            if not ended:
                raise IntegrityError("the backup is cut short (no end marker)")

    def verify(self, progress: Progress | None = None) -> int:
        """Check every byte; returns the number of memories the backup holds."""
        rows = 0
        for chunk in self.chunks(progress):
            if chunk["kind"] == "rows":
                rows += len(chunk["rows"])
            elif chunk["kind"] == "end" and chunk["rows"] != rows:
                raise IntegrityError("the backup's row count does not match its end marker")
        return rows


def _read_header(handle: IO[bytes]) -> bytes:
    """The header's bytes. A file that is not a backup at all is bad input (exit 8); one
    whose magic has a damaged byte or two, or whose header is cut, is damaged (exit 5)."""
    start = handle.read(len(MAGIC) + 4)
    differ = sum(a != b for a, b in zip(start, MAGIC))
    if len(start) < len(MAGIC) + 4 or differ > 2:
        raise BadInputError("not a memos backup file")
    if differ:
        raise IntegrityError("the backup's header is damaged (its first bytes)")
    (length,) = struct.unpack(">I", start[len(MAGIC):])
    if length > 1 << 20:
        raise IntegrityError("the backup's header is damaged")
    header = handle.read(length)
    if len(header) != length:
        raise IntegrityError("the backup's header is damaged")
    return header


HEADER_FIELDS = ("version", "backup_id", "kdf", "key_id", "data_key", "content_key")
OPTIONAL_FIELDS = ("profile", "digest")


def _digest(fields: dict[str, Any]) -> str:
    """A checksum of the header's fields. The header cannot be authenticated before the
    passphrase is known, and a damaged salt or KDF parameter would otherwise look like
    a wrong passphrase: this tells damage (exit 5) from a wrong passphrase (exit 4)."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def _parse_header(header: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(header)
        version = int(doc["version"])
        if version > BACKUP_VERSION:  # its fields may differ: say to upgrade, not "damaged"
            raise VersionError("this backup was written by a later memos: upgrade memos")
        if not all(isinstance(doc[name], (str, dict, int)) for name in HEADER_FIELDS):
            raise TypeError
        if set(doc) - set(HEADER_FIELDS) - set(OPTIONAL_FIELDS):
            raise KeyError  # a field name with a damaged byte
        fields = {k: v for k, v in doc.items() if k != "digest"}
        if "digest" in doc and doc["digest"] != _digest(fields):  # older backups have none
            raise ValueError
        crypto.KdfParams.from_json(doc["kdf"])
    except (ValueError, KeyError, TypeError, AttributeError, IntegrityError):
        raise IntegrityError("the backup's header is damaged") from None
    return doc


# --- restoring --------------------------------------------------------------------------------


def restore(engine: "MemoryEngine", source: Path, passphrase: str, *, force: bool = False,
            progress: Progress | None = None) -> int:
    """Restore a backup into this profile (empty, or replaced with ``force``); all or nothing.

    Replacing a profile keeps how its key is protected (passphrase, keyring or key
    file), so its key is unlocked first; one that cannot be unlocked must be
    destroyed with ``forget --all`` before restoring over it.
    """
    opened = Opened(source, passphrase)
    count = opened.verify(_half(progress, 0))  # nothing is written unless all of it checks out
    with engine.locked():  # unlocks first, and finishes what an interrupted command left
        if (engine.keys.exists() or engine.store.exists()) and not force:
            raise UsageError(f"profile {engine.profile!r} is not empty: restore refuses to "
                             "overwrite it without --force")
        marker = {"version": MARKER_VERSION, "phase": "staging",
                  "new_key": not engine.keys.exists(), "files": []}
        _write_marker(engine, marker)
        try:
            marker["files"] = _stage(engine, opened, _half(progress, 1))
        except BaseException:
            _discard(engine, marker)
            raise
        _write_marker(engine, dict(marker, phase="commit"))
        _finish(engine, marker)
    engine.adopt_keys(Unlocked(opened.key))
    with engine.unit(write=True) as work:
        assert work is not None
        work.record("restored", [], count=count)
    return count


def _half(progress: Progress | None, which: int) -> Progress | None:
    """Restore reads the file twice: each pass is one half of the progress bar."""
    if progress is None:
        return None
    return lambda done, total: progress(which * total + done, 2 * total)


def _stage(engine: "MemoryEngine", opened: Opened, progress: Progress | None) -> list[str]:
    """Build the restored profile beside the live one; returns the side files staged."""
    staging = _staging_store(engine)
    if staging.exists():  # left by a restore killed before it wrote its marker
        staging.drop()
    ensure_private_dir(engine.paths.keys_dir)
    write_atomic(_staged(engine.keys.file), engine.keys.wrap(opened.key))
    files = []
    for chunk in opened.chunks(progress):
        if chunk["kind"] == "meta":
            staging.create(chunk["meta"])
        elif chunk["kind"] == "rows":
            rows = chunk["rows"]
            vectors = np.vstack([np.frombuffer(crypto.b64d(r["vector"]), dtype="<f4")
                                 for r in rows])
            staging.add([r["id"] for r in rows], vectors, [r["meta"] for r in rows])
        elif chunk["kind"] == "file" and chunk["name"] in _side_files(engine):
            staged = _staged(_side_files(engine)[chunk["name"]])
            write_atomic(staged, crypto.b64d(chunk["data"]))
            _reseal(chunk["name"], staged, opened.key, opened.profile, engine.profile)
            files.append(chunk["name"])
    return files


def _reseal(name: str, path: Path, key: DataKey, source: str, target: str) -> None:
    """Bind a side file sealed for profile ``source`` to profile ``target`` instead.

    Each file is sealed with its profile's name as associated data (the contexts
    below are the ones the engine uses), so a backup restored under another
    profile name would otherwise be unreadable there.
    """
    if source == target:
        return
    keys = Unlocked(key)
    if name == "audit":  # a line that does not open is kept as it is, never dropped
        lines = AuditLog(path, f"audit/{source}").lines(keys)
        AuditLog(path, f"audit/{target}").rewrite(keys, lines)
    elif name == "vault":
        Vault(path, target).write(keys, Vault(path, source).read(keys))
    elif name == "usage":
        UsageLog(path, f"usage/{target}").replace(keys, UsageLog(path, f"usage/{source}").load(keys))


def recover(engine: "Profile") -> None:
    """Finish a restore killed after staging, or undo one killed before (under the lock)."""
    path = engine.paths.restore_marker(engine.profile)
    try:
        marker = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return
    except ValueError:  # torn marker: the swap had not begun (it is written atomically)
        marker = {"phase": "staging", "files": [], "new_key": False}
    if int(marker.get("version", 0)) > MARKER_VERSION:
        raise VersionError(f"{path} was written by a later memos: upgrade memos")
    if marker.get("phase") == "commit":
        _finish(engine, marker)
        engine.notice("notice: an interrupted restore was completed")
    else:
        _discard(engine, marker)
        engine.notice("notice: an interrupted restore was undone")
    engine.adopt_keys(None)


def _finish(engine: "Profile", marker: dict[str, Any]) -> None:
    """Swap the staged profile in. Every step can run again after a crash."""
    staging = _staging_store(engine)
    if staging.exists():
        engine.store.drop()  # the old collection, its index folders and freed pages
        staging.collection.modify(name=engine.store.collection_name)
        engine.store.reset()
    _replace(_staged(engine.keys.file), engine.keys.file)
    for name, path in _side_files(engine).items():
        if name in marker["files"]:
            _replace(_staged(path), path)
        else:  # the old profile's, sealed under its old key
            path.unlink(missing_ok=True)
    for path in engine.paths.profile_files(engine.profile).state:  # the old rows' bookkeeping
        path.unlink(missing_ok=True)
    engine.usage.reset()
    engine.paths.restore_marker(engine.profile).unlink(missing_ok=True)


def _discard(engine: "Profile", marker: dict[str, Any]) -> None:
    """Remove what a restore staged, leaving the profile as it was."""
    staging = _staging_store(engine)
    if staging.exists():
        staging.drop()
    for path in (engine.keys.file, *_side_files(engine).values()):
        _staged(path).unlink(missing_ok=True)
    if marker.get("new_key"):  # the KEK made for the staged key (key file or keyring entry)
        engine.keys.destroy()
    engine.paths.restore_marker(engine.profile).unlink(missing_ok=True)


def _write_marker(engine: "MemoryEngine", marker: dict[str, Any]) -> None:
    write_atomic(engine.paths.restore_marker(engine.profile), json.dumps(marker).encode())


def _staging_store(engine: "Profile") -> "ChromaStore":
    return engine.store.sibling(engine.profile + STAGED)


def _staged(path: Path) -> Path:
    return path.with_name(path.name + STAGED)


def _replace(staged: Path, path: Path) -> None:
    if staged.exists():
        os.replace(staged, path)
