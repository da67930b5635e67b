"""Shell completion scripts: committed files match the app, and bash really completes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from memos_cli.cli.completion_cmds import SHELLS, completion_script

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("shell", SHELLS)
def test_committed_script_matches_what_the_app_generates(shell, cli):
    committed = (ROOT / "completions" / f"memos.{shell}").read_text()
    assert committed == completion_script(shell) + "\n"
    assert cli("completion", shell).out == committed


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_bash_completes_subcommands_and_key_subcommands(tmp_path):
    # A `memos` on PATH that runs this checkout's code, as an installed one would.
    shim = tmp_path / "bin" / "memos"
    shim.parent.mkdir()
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m memos_cli \"$@\"\n")
    shim.chmod(0o755)
    script = ROOT / "completions" / "memos.bash"

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        program = (f"source {script}\nCOMP_WORDS=({' '.join(repr(w) for w in words)})\n"
                   f"COMP_CWORD={len(words) - 1}\n_memos_completion memos\n"
                   "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
        env = dict(os.environ, PATH=f"{shim.parent}:{os.environ['PATH']}")
        done = subprocess.run(["bash", "-c", program], capture_output=True, text=True,
                              env=env, timeout=60)
        return [w for w in done.stdout.split("\n") if w]

    assert set(complete("memos re")) == {"remember", "recall", "reindex", "restore"}
    assert set(complete("memos key ")) == {"status", "passphrase", "rotate", "export", "import"}
    assert "--kind" in complete("memos recall --k")
