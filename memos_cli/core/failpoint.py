"""Test-only crash points: ``MEMOS_TEST_FAILPOINT=<name>`` kills the process there.

Crash tests run a command with a named failpoint to prove that a kill at that
step leaves the store readable. In normal use the variable is unset: a no-op.
"""

from __future__ import annotations

import os

FAILPOINT_ENV = "MEMOS_TEST_FAILPOINT"
EXIT_CODE = 97  # what a test sees from a process killed at its failpoint


def failpoint(name: str) -> None:
    if os.environ.get(FAILPOINT_ENV) == name:
        os._exit(EXIT_CODE)
