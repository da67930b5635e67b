"""Typed errors of the memos library, each carrying the exit code the CLI uses.

The core raises these and nothing else for conditions a user can meet; only the
command line turns them into a one-line message on stderr and an exit code.
Messages never contain memory text.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit codes scripts rely on (documented in the README)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_FOUND = 3
    BAD_KEY = 4
    INTEGRITY = 5
    MODEL = 6
    BUSY = 7
    BAD_INPUT = 8
    INTERRUPTED = 130


class MemosError(Exception):
    """Base class: a condition the user can act on, with its exit code."""

    exit_code: ExitCode = ExitCode.ERROR


class UsageError(MemosError):
    """The request itself is malformed (bad flag value, unparseable date)."""

    exit_code = ExitCode.USAGE


class NotFoundError(MemosError):
    """No memory matches the id or prefix given (or the prefix is ambiguous)."""

    exit_code = ExitCode.NOT_FOUND


class WrongKeyError(MemosError):
    """Wrong passphrase, missing key, or a key that does not open this store."""

    exit_code = ExitCode.BAD_KEY


class IntegrityError(MemosError):
    """Stored data failed authentication: tampered with or corrupted."""

    exit_code = ExitCode.INTEGRITY


class ModelError(MemosError):
    """The embedding or chat model failed or is missing."""

    exit_code = ExitCode.MODEL


class BusyError(MemosError):
    """Another memos process held the store longer than we were willing to wait."""

    exit_code = ExitCode.BUSY


class BadInputError(MemosError):
    """An import file (or other input document) is malformed."""

    exit_code = ExitCode.BAD_INPUT


class VersionError(MemosError):
    """An on-disk format is newer than this memos understands."""

    exit_code = ExitCode.ERROR


class ServerError(MemosError):
    """A Chroma server answered, but memos cannot use it (an untrusted TLS certificate)."""

    exit_code = ExitCode.ERROR


class StoreMismatchError(MemosError):
    """The store was built with another embedding model or dimension."""

    exit_code = ExitCode.ERROR
