"""Background consolidation: when to start one, on which store, and backing off.

After ``auto_after`` new memories, a command starts ``memos consolidate`` in a
detached process. The child is given the parent's profile and store explicitly (a
store named with ``--store`` is not in the child's environment, so it would
consolidate another store). A start that does not succeed (a server store, which
consolidate does not support yet; a model that is down; a kill) leaves the store's
counter as it was, so every later write would start another doomed process. Each
start is therefore recorded in a small file with the earliest time of the next one:
FIRST_WAIT after the first, twice as long after each start that did not succeed, up
to LONGEST_WAIT. A consolidation that succeeds removes the file: the waits start over.
The file holds a count, a time and an exit code; no memory text.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from memos_cli.core.atomic import write_atomic
from memos_cli.core.paths import Paths
from memos_cli.core.timeparse import from_iso, to_iso

FIRST_WAIT = timedelta(minutes=5)
LONGEST_WAIT = timedelta(days=1)


@dataclass
class Attempts:
    started: int = 0  # starts since the last consolidation that succeeded
    next_start: str | None = None  # no new start before this time (ISO)
    last_exit: int | None = None  # how the last start ended; None: running, or killed
    told: bool = False  # whether the user was told that it failed


def state_file(paths: Paths, profile: str) -> Path:
    return paths.autoconsolidate_file(profile)


def read(paths: Paths, profile: str) -> Attempts:
    try:
        data = json.loads(state_file(paths, profile).read_text("utf-8"))
        return Attempts(int(data["started"]), data.get("next_start"), data.get("last_exit"),
                        bool(data.get("told")))
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        return Attempts()  # advisory: a lost or damaged file only allows one more start


def claim(paths: Paths, profile: str, now: datetime) -> bool:
    """Whether a background consolidation may start now; if so, the start is recorded
    (before it happens, so that one still running also holds the next ones back)."""
    attempts = read(paths, profile)
    try:
        if attempts.next_start and from_iso(attempts.next_start) > now:
            return False
    except (ValueError, TypeError, AttributeError):
        pass  # an unreadable time: start, and write a good one
    wait = min(FIRST_WAIT * 2 ** min(attempts.started, 16), LONGEST_WAIT)
    _write(paths, profile, Attempts(attempts.started + 1, to_iso(now + wait)))
    return True


def finished(paths: Paths, profile: str, exit_code: int) -> None:
    """Record how a consolidation ended: success starts the waits over."""
    if exit_code == 0:
        state_file(paths, profile).unlink(missing_ok=True)
        return
    attempts = read(paths, profile)
    if attempts.started:
        attempts.last_exit = exit_code
        _write(paths, profile, attempts)


def failure_to_tell(paths: Paths, profile: str) -> str | None:
    """Once per failure: what to tell the user about a background run that failed."""
    attempts = read(paths, profile)
    if attempts.last_exit in (None, 0) or attempts.told:
        return None
    attempts.told = True
    _write(paths, profile, attempts)
    return (f"notice: the background consolidation failed (exit {attempts.last_exit}); it "
            f"will be tried again later. 'memos consolidate' shows why; "
            "'memos config set lifecycle.auto_after 0' turns it off")


def command(profile: str, store_url: str | None) -> list[str]:
    """The child's command line: the same profile and the same store as its parent."""
    args = [sys.executable, "-m", "memos_cli", "--profile", profile]
    if store_url:
        args += ["--store", store_url]
    return args + ["consolidate", "--yes", "--quiet"]


def _write(paths: Paths, profile: str, attempts: Attempts) -> None:
    write_atomic(state_file(paths, profile), json.dumps(asdict(attempts)).encode(), sync=False)
