"""Side files (vault, usage counts, keyword index) sealed under a data key, tagged with its id.

A file is one JSON header line ``{"format": ..., "version": N, "key_id": ...}`` and
the sealed payload after it. The key id says which data key sealed it, so during and
after ``key rotate`` each file is opened with the right key, and a rotation resumed
after a crash knows which files it already re-sealed. The id is bound into the
seal's associated data, so changing it only makes the file fail its check. Files
from before this format (a bare sealed blob) are opened with whichever key works.
"""

from __future__ import annotations

import json
import mmap
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memos_cli.core import crypto
from memos_cli.core.errors import IntegrityError, VersionError

if TYPE_CHECKING:
    from memos_cli.core.keys import DataKey, Unlocked


def seal_file(fmt: str, version: int, key: DataKey, purpose: str, payload: bytes,
              context: str, public: dict[str, str | int] | None = None) -> bytes:
    """The bytes of a side file holding ``payload``, sealed under ``key``; ``public``
    goes into the header, readable without the key (never anything secret)."""
    header = json.dumps({"format": fmt, "version": version, "key_id": key.key_id,
                         **(public or {})})
    blob = crypto.seal(crypto.subkey(key.key, purpose), payload, f"{context}/{key.key_id}")
    return header.encode() + b"\n" + blob


def read_header(path: Path) -> dict[str, Any] | None:
    """The header line of the sealed file at ``path`` (what ``seal_file``'s ``public``
    put there, readable without the key), read alone; None if there is no such file or
    its first line is no header (an older format, or damage: for ``open_file`` to judge)."""
    try:
        with path.open("rb") as fh:
            doc = json.loads(fh.readline(4096))
    except (FileNotFoundError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def map_file(path: Path) -> bytes | mmap.mmap:
    """A large side file's bytes for ``open_file``, mapped rather than read: unsealing
    then reads the page cache itself, not a copy of it made first (18 of 36 ms for the
    35 MB keyword index of 100k memories). Raises FileNotFoundError."""
    with path.open("rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return b""
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)  # (keeps its own fd)


def open_file(path: Path, blob: bytes | mmap.mmap, fmt: str, version: int, keys: Unlocked,
              purpose: str, context: str) -> tuple[str, bytes]:
    """(id of the key that sealed it, payload); raises IntegrityError or VersionError."""
    if blob[:1] != b"{":
        return _open_legacy(path, bytes(blob), keys, purpose, context)
    cut = blob.find(b"\n")  # (not partition: that copies the sealed part, 35 MB at 100k)
    head = blob[:] if cut < 0 else blob[:cut]  # (bytes, also of a mapped file)
    sealed = memoryview(blob)[len(blob) if cut < 0 else cut + 1:]
    try:
        doc = json.loads(head)
        if doc["format"] != fmt:
            raise ValueError
        if int(doc["version"]) > version:
            raise VersionError(f"{path} was written by a later memos: upgrade memos")
        key_id = str(doc["key_id"])
    except (ValueError, TypeError, KeyError):
        raise IntegrityError(f"{path} is damaged (its header does not read)") from None
    key = keys.by_id(key_id)
    if key is None:
        raise IntegrityError(f"{path} is sealed under a key this profile does not have")
    try:
        return key_id, crypto.unseal(crypto.subkey(key.key, purpose), sealed,
                                     f"{context}/{key_id}")
    except IntegrityError:
        raise IntegrityError(f"{path} failed its integrity check: it was altered") from None


def _open_legacy(path: Path, blob: bytes, keys: Unlocked, purpose: str,
                 context: str) -> tuple[str, bytes]:
    """A file written before key ids were recorded (version 1): try each key."""
    for key in keys.each:
        try:
            return key.key_id, crypto.unseal(crypto.subkey(key.key, purpose), blob, context)
        except IntegrityError:
            continue
    raise IntegrityError(f"{path} failed its integrity check: it was altered")
