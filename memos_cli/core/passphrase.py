"""Where a passphrase comes from: one rule for every passphrase memos needs.

Each passphrase has a name (``MEMOS_PASSPHRASE`` for the profile's key,
``MEMOS_NEW_PASSPHRASE``, ``MEMOS_BACKUP_PASSPHRASE``, ``MEMOS_EXPORT_PASSPHRASE``) and is
looked for, as borg does, in this order:

1. ``NAME``: the passphrase itself (simple, but visible to the user's other processes
   on some systems);
2. ``NAME_FD``: a file descriptor to read it from (its first line), for a parent
   process that hands it over a pipe;
3. ``NAME_COMMAND``: a command whose first output line is the passphrase (run without
   a shell), for a password manager, e.g. ``pass show memos``;
4. a hidden prompt, when standard input is a terminal (typed twice for a new one);
5. otherwise none, and the caller says which of the above to set.
"""

from __future__ import annotations

import getpass
import os
import shlex
import subprocess
import sys
from typing import Mapping

from memos_cli.core.errors import UsageError

COMMAND_TIMEOUT = 60.0  # seconds a passphrase command may take (a password manager may ask)


def from_environment(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The passphrase ``name`` from the environment (value, _FD or _COMMAND), or None."""
    env = os.environ if env is None else env
    if env.get(name):
        return env[name]
    if env.get(f"{name}_FD"):
        return _from_fd(name, env[f"{name}_FD"])
    if env.get(f"{name}_COMMAND"):
        return _from_command(name, env[f"{name}_COMMAND"])
    return None


def given(name: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment offers the passphrase ``name`` (without reading it)."""
    env = os.environ if env is None else env
    return any(env.get(name + suffix) for suffix in ("", "_FD", "_COMMAND"))


def ask(name: str, prompt: str, *, new: bool = False) -> str | None:
    """From the environment, else typed on a terminal (twice if ``new``), else None."""
    value = from_environment(name)
    if value is not None or not sys.stdin.isatty():
        return value
    value = getpass.getpass(f"{prompt.rstrip(': ')}: ", stream=sys.stderr)
    if new and value != getpass.getpass("Repeat it: ", stream=sys.stderr):
        raise UsageError("the two passphrases differ: nothing done")
    return value


def required(name: str, prompt: str, *, new: bool = False) -> str:
    """As ``ask``, but no passphrase is a usage error that says how to give one."""
    value = ask(name, prompt, new=new)
    if not value:
        raise UsageError(f"set {name} (or {name}_FD, {name}_COMMAND), or run this on a terminal")
    return value


def profile_passphrase(_prompt: str) -> str | None:
    """The library's default source for a profile's passphrase: the environment only."""
    return from_environment("MEMOS_PASSPHRASE")


def _from_fd(name: str, raw: str) -> str:
    try:
        fd = int(raw)
        with os.fdopen(fd, "r", encoding="utf-8", closefd=True) as stream:
            line = stream.readline()
    except (ValueError, OSError) as exc:
        raise UsageError(f"{name}_FD={raw!r}: cannot read a passphrase from it ({exc})") from None
    return line.rstrip("\r\n")


def _from_command(name: str, command: str) -> str:
    try:
        done = subprocess.run(shlex.split(command), capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, check=False)
    except (ValueError, OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"{name}_COMMAND could not be run: {exc}") from None
    if done.returncode != 0:
        raise UsageError(f"{name}_COMMAND exited {done.returncode}: no passphrase")
    lines = done.stdout.splitlines()
    return lines[0] if lines else ""
