"""Backup and restore: one encrypted, integrity-checked, streamable file per profile.

The file is safe to keep anywhere (a cloud folder included): its content is sealed
under a random content key, and both that key and the profile's data key are
wrapped by a key derived from a backup passphrase (Argon2id or scrypt, as for the
store). Layout: magic, a plaintext header (format version, KDF parameters, wrapped
keys; no memory data), then length-prefixed sealed chunks, each bound to the header
and to its position, the last one an end marker with the counts. A flipped byte
anywhere, a truncation, or reordered chunks fail the check. Restore reads the file
twice, checking every chunk before it writes anything, and journals what it adds.
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

from memos_cli import crypto
from memos_cli.errors import BadInputError, IntegrityError, UsageError, VersionError
from memos_cli.keys import DataKey

if TYPE_CHECKING:
    from memos_cli.engine import MemoryEngine

MAGIC = b"MEMOSBAK"
BACKUP_VERSION = 1
ROWS_PER_CHUNK = 500
Progress = Callable[[int, int], None]


def write_backup(engine: "MemoryEngine", target: Path, passphrase: str,
                 progress: Progress | None = None) -> int:
    """Write the whole profile to ``target`` (atomically); returns the number of memories."""
    if not passphrase:
        raise UsageError("the backup passphrase is empty")
    with engine._session(write=False) as codec:
        if codec is None:
            raise UsageError("this profile is empty: nothing to back up")
        unlocked = engine._unlocked
        assert unlocked is not None
        if unlocked.next is not None:
            raise UsageError("a key rotation is unfinished: run any memos command first")
        total = engine.store.count()
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or Path("."))
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
    header = json.dumps({
        "version": BACKUP_VERSION, "backup_id": backup_id, "profile": engine.profile,
        "kdf": params.to_json(), "key_id": key.key_id,
        "data_key": crypto.b64e(crypto.seal(kek, key.key, f"backup/{backup_id}/data-key")),
        "content_key": crypto.b64e(crypto.seal(kek, content_key, f"backup/{backup_id}/content")),
    }).encode()
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


def _side_files(engine: "MemoryEngine") -> dict[str, Path]:
    """Sealed files that belong to the profile besides the rows (the keyword index is
    left out: it is rebuilt from the memories)."""
    return {"audit": engine.paths.audit_file(engine.profile),
            "vault": engine.paths.vault_file(engine.profile),
            "usage": engine.paths.usage_file(engine.profile)}


# --- reading --------------------------------------------------------------------------------


def read_chunks(source: Path, passphrase: str) -> tuple[DataKey, Iterator[dict[str, Any]]]:
    """Open a backup: (its data key, an iterator over its checked chunks)."""
    handle = open(source, "rb")
    try:
        header = _read_header(handle)
        doc = _parse_header(header)
        kek = crypto.derive_kek(passphrase, crypto.KdfParams.from_json(doc["kdf"]))
        backup_id = doc["backup_id"]
        data_key = crypto.unwrap_key_with_context(kek, crypto.b64d(doc["data_key"]),
                                                  f"backup/{backup_id}/data-key")
        content_key = crypto.unwrap_key_with_context(kek, crypto.b64d(doc["content_key"]),
                                                     f"backup/{backup_id}/content")
    except BaseException:
        handle.close()
        raise
    binding = f"backup/{backup_id}/{hashlib.sha256(header).hexdigest()}"
    return DataKey(doc["key_id"], data_key), _chunks(handle, content_key, binding)


def _read_header(handle: IO[bytes]) -> bytes:
    start = handle.read(len(MAGIC) + 4)
    if len(start) < len(MAGIC) + 4 or start[:len(MAGIC)] != MAGIC:
        raise BadInputError("not a memos backup file")
    (length,) = struct.unpack(">I", start[len(MAGIC):])
    header = handle.read(length)
    if length > 1 << 20 or len(header) != length:
        raise IntegrityError("the backup's header is damaged")
    return header


HEADER_FIELDS = ("version", "backup_id", "kdf", "key_id", "data_key", "content_key")


def _parse_header(header: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(header)
        version = int(doc["version"])
        crypto.KdfParams.from_json(doc["kdf"])
        if not all(isinstance(doc[name], (str, dict, int)) for name in HEADER_FIELDS):
            raise TypeError
    except (ValueError, KeyError, TypeError, AttributeError, IntegrityError):
        raise IntegrityError("the backup's header is damaged") from None
    if version > BACKUP_VERSION:
        raise VersionError("this backup was written by a later memos: upgrade memos")
    return doc


def _chunks(handle: IO[bytes], key: bytes, binding: str) -> Iterator[dict[str, Any]]:
    with handle:
        number, ended = 0, False
        while True:
            prefix = handle.read(4)
            if not prefix:
                break
            if ended or len(prefix) < 4:
                raise IntegrityError("the backup has bytes after its end, or is cut short")
            (length,) = struct.unpack(">I", prefix)
            blob = handle.read(length)
            if len(blob) != length:
                raise IntegrityError("the backup is cut short")
            chunk = json.loads(crypto.unseal(key, blob, f"{binding}/{number}"))
            number += 1
            ended = chunk.get("kind") == "end"
            if ended and chunk.get("chunks") != number:
                raise IntegrityError("the backup's chunks do not add up")
            yield chunk
        if not ended:
            raise IntegrityError("the backup is cut short (no end marker)")


def verify(source: Path, passphrase: str) -> tuple[DataKey, list[str]]:
    """Check every byte of a backup; returns its data key and the ids it holds."""
    key, chunks = read_chunks(source, passphrase)
    ids: list[str] = []
    for chunk in chunks:
        if chunk["kind"] == "rows":
            ids.extend(row["id"] for row in chunk["rows"])
        elif chunk["kind"] == "end" and chunk["rows"] != len(ids):
            raise IntegrityError("the backup's row count does not match its end marker")
    return key, ids


def restore(engine: "MemoryEngine", source: Path, passphrase: str, *, force: bool = False,
            progress: Progress | None = None) -> int:
    """Restore a backup into this profile (empty, or replaced with ``force``)."""
    key, ids = verify(source, passphrase)  # nothing is written unless all of it checks out
    if engine.exists() or engine.store.exists():
        if not force:
            raise UsageError(f"profile {engine.profile!r} is not empty: restore refuses to "
                             "overwrite it without --force")
        engine.forget_all()
    engine.keys.create(existing=key)
    engine._unlocked = None
    _, chunks = read_chunks(source, passphrase)
    with engine._session(write=True, create=False) as codec:
        assert codec is None  # no collection yet: it is made from the backup's metadata
        with engine._journal(ids):
            done = 0
            for chunk in chunks:
                done += _restore_chunk(engine, chunk)
                if progress:
                    progress(done, len(ids))
    engine._unlocked = engine._codec = engine._keywords = None
    with engine._session(write=True):
        engine._audit("restored", [], count=len(ids))
    return len(ids)


def _restore_chunk(engine: "MemoryEngine", chunk: dict[str, Any]) -> int:
    kind = chunk["kind"]
    if kind == "meta":
        engine.store.create(chunk["meta"])
    elif kind == "rows":
        rows = chunk["rows"]
        vectors = np.vstack([np.frombuffer(crypto.b64d(r["vector"]), dtype="<f4") for r in rows])
        engine.store.add([r["id"] for r in rows], vectors, [r["meta"] for r in rows])
        return len(rows)
    elif kind == "file" and chunk["name"] in _side_files(engine):
        from memos_cli.atomic import write_atomic

        write_atomic(_side_files(engine)[chunk["name"]], crypto.b64d(chunk["data"]))
    return 0
