"""The store lock: one writer (or reader) at a time, with a bounded wait.

Chroma's local store is not safe for concurrent writers from several processes,
and a process that holds an index in memory must notice another's writes. So every
store operation runs under an exclusive ``flock`` on ``store.lock``; a process that
cannot get it within the timeout raises ``BusyError`` (exit 7) and changes nothing.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from memos_cli.core.atomic import make_private_dirs
from memos_cli.core.errors import BusyError

DEFAULT_TIMEOUT_S = 30.0


def lock_timeout() -> float:
    try:
        return float(os.environ.get("MEMOS_LOCK_TIMEOUT", DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S


@contextmanager
def store_lock(path: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the duration of the block."""
    timeout = lock_timeout() if timeout is None else timeout
    make_private_dirs(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _acquire(fd, timeout)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise BusyError(
                    f"the memory store is busy (another memos process held it for {timeout:g}s); "
                    "try again, or raise MEMOS_LOCK_TIMEOUT"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
