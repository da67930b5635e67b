"""The Chroma layer: rows of (random id, blinded vector, sealed metadata), nothing more.

This module talks to chromadb and to Chroma's SQLite file; nothing else in memos
does. It never sees plaintext: callers hand it ciphertext and rotated vectors.
It also owns the no-trace deletion Chroma lacks: a forgotten row's vector is first
overwritten in the index, then deleted, then SQLite is vacuumed and its WAL
truncated, and folders of dropped collections are removed. On a Chroma server
(``Remote``) it checks the server's version first and retries each call while the
server is unreachable; the server's SQLite file is out of its reach (SECURITY.md).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from memos_cli.core.atomic import make_private_dirs
from memos_cli.core.errors import (BusyError, MemosError, ServerError, UsageError, VersionError,
                              WrongKeyError)

# Flush the HNSW index after every couple of writes: an update that overwrites a
# vector before deletion only erases the old copy once the index is written.
HNSW_SYNC_THRESHOLD = 2
PAGE = 5000  # rows per Chroma call; below chromadb's max batch size


@dataclass
class Row:
    id: str
    meta: dict[str, Any]
    vector: np.ndarray | None = None


def collection_name(profile: str) -> str:
    return f"memos-{profile}"


class ChromaStore:
    """One profile's collection in a local Chroma ``PersistentClient``."""

    def __init__(self, path: Path, profile: str, remote: "Remote | None" = None) -> None:
        self.path, self.profile, self.remote = path, profile, remote
        self._client: Any = None
        self._collection: Any = None
        self.row_writes = 0  # calls that changed rows: a write session that made none changed none

    def sibling(self, profile: str) -> "ChromaStore":
        """A store for another collection name in the same place (local or remote), over
        the same connection: making a client costs 10-40 ms, and every command looks
        for an interrupted reindex's collection."""
        other = ChromaStore(self.path, profile, self.remote)
        other._client = self._client
        return other

    # --- connection -------------------------------------------------------------

    def preload(self) -> None:
        """Import Chroma (a second or so) without connecting: callers do it before
        taking the store lock."""
        import chromadb  # noqa: F401

    def _connect(self) -> Any:
        if self._client is None:
            import chromadb
            from chromadb.config import Settings

            settings = Settings(anonymized_telemetry=False)
            if self.remote is not None:
                self._client = self.remote.connect(settings)
            else:
                make_private_dirs(self.path)
                self._client = chromadb.PersistentClient(path=str(self.path), settings=settings)
                os.chmod(self.path / "chroma.sqlite3", 0o600)  # Chroma makes it 0644
        return self._client

    def reset(self) -> None:
        """Drop in-process caches so the next call sees other processes' writes.

        Chroma caches one client per path for the whole process, so this also
        closes clients other ``ChromaStore`` objects opened (they reconnect: the
        generation that made us reset tells them too). Closed, not only forgotten:
        dropping Chroma's cache left each client's files open, ~5 descriptors per reset,
        which a long-lived process (the agent, ``memos mcp``) ran out of.
        """
        self.close_all()
        self.disconnect()

    @staticmethod
    def close_all() -> None:
        """Close every Chroma client of this process (their files included)."""
        if "chromadb" in sys.modules:
            from chromadb.api.shared_system_client import SharedSystemClient

            for system in list(SharedSystemClient._identifier_to_system.values()):
                system.stop()
            SharedSystemClient.clear_system_cache()

    def disconnect(self) -> None:
        """Forget this object's client and collection; the next call reconnects."""
        self._client = self._collection = None

    @property
    def collection_name(self) -> str:
        return collection_name(self.profile)

    def exists(self) -> bool:
        if self._collection is not None:
            return True
        if self.remote is None and not (self.path / "chroma.sqlite3").exists():
            return False
        try:
            self._collection = self._connect().get_collection(collection_name(self.profile))
            return True
        except Exception as exc:
            if _missing(exc):
                return False
            raise

    def create(self, meta: dict[str, Any]) -> None:
        # get_or_create: a retried create on a server, or another machine's create at
        # the same moment, finds the collection instead of failing (its meta is checked).
        self._collection = self._connect().get_or_create_collection(
            collection_name(self.profile), embedding_function=None, metadata=meta,
            configuration={"hnsw": {"space": "cosine", "sync_threshold": HNSW_SYNC_THRESHOLD}})

    @property
    def collection(self) -> Any:
        if self._collection is None and not self.exists():
            raise MemosError("internal: the collection is not open")
        return self._collection

    def meta(self) -> dict[str, Any]:
        return dict(self.collection.metadata or {})

    def set_meta(self, meta: dict[str, Any]) -> None:
        self.collection.modify(metadata=meta)

    # --- rows -------------------------------------------------------------------

    def count(self) -> int:
        return self.collection.count()

    def add(self, ids: Sequence[str], vectors: np.ndarray, metas: Sequence[dict]) -> None:
        if not ids:
            return
        self.row_writes += 1
        for start in range(0, len(ids), PAGE):
            end = start + PAGE
            self.collection.add(ids=list(ids[start:end]), embeddings=vectors[start:end],
                                metadatas=list(metas[start:end]))

    def update(self, ids: Sequence[str], metas: Sequence[dict],
               vectors: np.ndarray | None = None) -> None:
        self.row_writes += 1
        for start in range(0, len(ids), PAGE):
            end = start + PAGE
            self.collection.update(
                ids=list(ids[start:end]), metadatas=list(metas[start:end]),
                embeddings=None if vectors is None else vectors[start:end])

    def get(self, ids: Sequence[str], with_vectors: bool = False) -> list[Row]:
        if not ids:
            return []
        include = ["metadatas", "embeddings"] if with_vectors else ["metadatas"]
        rows: list[Row] = []
        for start in range(0, len(ids), PAGE):
            got = self.collection.get(ids=list(ids[start:start + PAGE]), include=include)
            rows.extend(_rows(got, with_vectors))
        return rows

    def find(self, where: dict[str, Any]) -> list[Row]:
        return _rows(self.collection.get(where=where, include=["metadatas"]), False)

    def scan(self, with_vectors: bool = False) -> Iterator[Row]:
        """Every row, a page at a time."""
        include = ["metadatas", "embeddings"] if with_vectors else ["metadatas"]
        offset = 0
        while True:
            got = self.collection.get(include=include, limit=PAGE, offset=offset)
            page = _rows(got, with_vectors)
            yield from page
            if len(page) < PAGE:
                return
            offset += PAGE

    def all_ids(self) -> list[str]:
        ids: list[str] = []
        offset = 0
        while True:
            got = self.collection.get(include=[], limit=PAGE, offset=offset)["ids"]
            ids.extend(got)
            if len(got) < PAGE:
                return ids
            offset += PAGE

    def nearest(self, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        """The ids of the ``n`` nearest rows and their distances; callers keep ``n`` within
        the row count. Rows themselves are read with ``get``: Chroma's query spends 7 of
        its 8 ms at 100k memories reading the metadata of 50 results, which a ``get`` of
        the same ids reads in 1."""
        if n <= 0:
            return []
        got = self.collection.query(query_embeddings=vector.reshape(1, -1), n_results=n,
                                    include=["distances"])
        return list(zip(got["ids"][0], (float(d) for d in got["distances"][0])))

    # --- deletion that leaves nothing behind ---------------------------------------

    def scrub_delete(self, ids: Sequence[str], dim: int) -> None:
        """Delete rows so that neither their vectors nor their metadata survive on disk."""
        if not ids:
            return
        noise = np.random.default_rng().standard_normal((len(ids), dim)).astype(np.float32)
        # Overwrite first: deleting alone leaves the vector in the index file.
        self.update(ids, [{"c": ""} for _ in ids], noise)
        for start in range(0, len(ids), PAGE):
            self.collection.delete(ids=list(ids[start:start + PAGE]))
        self._flush_queue(dim)
        self.compact()

    def _flush_queue(self, dim: int) -> None:
        """Make Chroma apply its queued operations to the index files now.

        Chroma applies queued writes when the next write arrives; until then the
        deleted ids stay in its id map and its queue. A throwaway row, added and
        deleted, is that next write (it holds only random bytes).
        """
        throwaway = "flush-" + uuid.uuid4().hex
        noise = np.random.default_rng().standard_normal((1, dim)).astype(np.float32)
        self.collection.add(ids=[throwaway], embeddings=noise, metadatas=[{"c": ""}])
        self.collection.delete(ids=[throwaway])

    def drop(self) -> None:
        """Delete the whole collection, its segment folders and its freed pages."""
        self.row_writes += 1
        if self.exists():
            try:
                self._connect().delete_collection(collection_name(self.profile))
            except Exception as exc:  # a retried delete on a server finds it gone
                if not _missing(exc):
                    raise
        self._collection = None
        self.compact()

    def compact(self) -> None:
        """Vacuum SQLite, truncate its WAL, remove folders of segments that no longer exist.

        On a server this cannot be done from here: see SECURITY.md for what remains.
        """
        if self.remote is not None:
            return
        db_path = self.path / "chroma.sqlite3"
        if not db_path.exists():
            return
        db = sqlite3.connect(db_path, timeout=30)
        try:
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            live = {row[0] for row in db.execute("SELECT id FROM segments")}
        finally:
            db.close()
        for entry in self.path.iterdir():
            if entry.is_dir() and _looks_like_segment(entry.name) and entry.name not in live:
                shutil.rmtree(entry, ignore_errors=True)

    def snapshot(self, dest: Path) -> None:
        """Copy Chroma's files to ``dest``, closed and checkpointed so the copy is whole."""
        if self.remote is not None:
            raise UsageError("consolidate works on a local store only for now: a server's "
                             "files cannot be copied aside to make it all or nothing")
        self.reset()
        self._checkpoint()
        shutil.copytree(self.path, dest)

    def restore(self, src: Path) -> None:
        """Put back the files a ``snapshot`` copied."""
        self.row_writes += 1
        self.reset()
        shutil.rmtree(self.path, ignore_errors=True)
        shutil.copytree(src, self.path)

    def _checkpoint(self) -> None:
        db_path = self.path / "chroma.sqlite3"
        if db_path.exists():
            db = sqlite3.connect(db_path, timeout=30)
            try:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                db.close()


def _rows(got: dict[str, Any], with_vectors: bool) -> list[Row]:
    metas = got.get("metadatas") or [{} for _ in got["ids"]]
    vectors = got.get("embeddings") if with_vectors else None
    return [Row(id=i, meta=m or {}, vector=None if vectors is None else np.asarray(vectors[n]))
            for n, (i, m) in enumerate(zip(got["ids"], metas))]


def _missing(exc: Exception) -> bool:
    """Whether chromadb failed because the collection does not exist (its error type
    differs between versions and between local and HTTP clients; the message does not)."""
    return "does not exist" in str(exc) or "not found" in str(exc).lower()


def _looks_like_segment(name: str) -> bool:
    parts = name.split("-")
    return len(parts) == 5 and all(c in "0123456789abcdef-" for c in name)


class Remote:
    """Where a Chroma server is and how to reach it: ``http(s)://host:port``, a token, a CA.

    Every call to the server goes through ``call``, which retries while the server
    cannot be reached and then raises ``BusyError``. Retrying is safe because every
    write memos makes is idempotent: Chroma ignores an ``add`` of an id it already
    holds, and updates, deletes and metadata changes set a state rather than change it.
    """

    RETRIES = (0.5, 1.0, 2.0)  # seconds between attempts to reach a server that is down
    PROBE_TIMEOUT = 10.0  # seconds; chromadb's own client waits forever

    def __init__(self, url: str, token: str | None = None, ca: str | None = None) -> None:
        from urllib.parse import urlparse

        parsed = urlparse(url)
        # chromadb's client takes a host and port only: a path would be silently dropped.
        if parsed.scheme not in ("http", "https") or not parsed.hostname \
                or parsed.path not in ("", "/"):
            raise UsageError(f"not a Chroma server URL: {url!r} (use http://host:port)")
        self.url, self.token, self.ca = url.rstrip("/"), token, ca
        self.host, self.ssl = parsed.hostname, parsed.scheme == "https"
        self.port = parsed.port or (443 if self.ssl else 8000)

    @property
    def headers(self) -> dict[str, str] | None:
        return {"Authorization": f"Bearer {self.token}"} if self.token else None

    def connect(self, settings: Any) -> Any:
        """A chromadb client for the server, after checking that it is a Chroma 1.x."""
        import chromadb

        version = self.call(self._probe)
        if not version.startswith("1."):
            raise VersionError(f"the Chroma server at {self.url} runs version {version}; "
                               "memos needs a 1.x server")
        if self.ca:
            settings.chroma_server_ssl_verify = self.ca
        client = self.call(chromadb.HttpClient, host=self.host, port=self.port, ssl=self.ssl,
                           headers=self.headers, settings=settings)
        return _Retrying(client, self)

    def _probe(self) -> str:
        """The server's version, asked directly so that each failure gets its own message."""
        import ssl

        import httpx

        verify = ssl.create_default_context(cafile=self.ca) if self.ca else True
        try:
            reply = httpx.get(f"{self.url}/api/v2/version", headers=self.headers,
                              timeout=self.PROBE_TIMEOUT, verify=verify)
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise ServerError(f"the TLS certificate of {self.url} is not trusted: set "
                                  "store.ca (or MEMOS_STORE_CA) to its CA file") from None
            raise
        if reply.status_code in (401, 403):
            raise WrongKeyError(f"the server at {self.url} refused the token (HTTP "
                                f"{reply.status_code}): set store.token or MEMOS_STORE_TOKEN")
        try:
            version = reply.json() if reply.status_code == 200 else None
        except ValueError:
            version = None
        if not isinstance(version, str):
            raise VersionError(f"{self.url} does not answer like a Chroma 1.x server "
                               f"(HTTP {reply.status_code} for /api/v2/version)")
        return version

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, retried while the server cannot be reached."""
        delays = iter(self.RETRIES)
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not _unreachable(exc):
                    raise
                delay = next(delays, None)
                if delay is None:
                    raise BusyError(f"the memory server at {self.url} is unreachable "
                                    f"(tried {len(self.RETRIES) + 1} times)") from None
                time.sleep(delay)


def _unreachable(exc: Exception) -> bool:
    """Whether a chromadb call failed because the server could not be reached."""
    import httpx

    # chromadb reports a refused connection while it checks the tenant as a ValueError.
    return isinstance(exc, httpx.TransportError) or (
        isinstance(exc, ValueError) and "Could not connect to a Chroma server" in str(exc))


class _Retrying:
    """A chromadb client or collection on a server: each method call goes through
    ``Remote.call``, and the collections it returns are wrapped the same way."""

    def __init__(self, target: Any, remote: Remote) -> None:
        self._target, self._remote = target, remote

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            from chromadb.api.models.Collection import Collection

            result = self._remote.call(value, *args, **kwargs)
            return _Retrying(result, self._remote) if isinstance(result, Collection) else result

        return call
