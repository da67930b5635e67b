"""Commands that do not need a heavy module never import it (startup stays fast)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("chromadb", "onnxruntime", "openai", "tokenizers")
PROBE = ("import sys, json\nfrom memos_cli.cli.app import invoke\n"
         "code = invoke(sys.argv[1:])\n"
         "print(json.dumps([m for m in {heavy!r} if m in sys.modules]), file=sys.stderr)\n")


def _heavy_imported(*args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
                          capture_output=True, text=True, timeout=120)
    return json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["key", "status"],
                                  ["completion", "bash"]])
def test_light_commands_import_nothing_heavy(args):
    assert _heavy_imported(*args) == []


def test_list_needs_chroma_but_not_the_model(cli):
    cli("remember", "something to list")
    assert _heavy_imported("list") == ["chromadb"]
