"""Every example in the README runs, as a real subprocess, and prints what the README shows.

Console blocks (```console) hold `$ command` lines followed by their output. They run
in order in one bash session with `memos` on PATH and a fresh MEMOS_HOME. Output is
compared after masking what differs from run to run (ids, times, scores, sizes).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
MASKS = [
    (re.compile(r"\b[0-9a-f]{16}\b"), "<id>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z"), "<time>"),
    (re.compile(r"\(\d{4}-\d{2}-\d{2}, "), "(<date>, "),  # recalled memories' dates
    (re.compile(r"^## [0-9a-f]{8} · (\w+) · \d{4}-\d{2}-\d{2}$"), r"## <id> · \1 · <date>"),
    (re.compile(r"^-?\d\.\d{4}\t"), "<score>\t"),
    (re.compile(r"\b[0-9a-f]{8}\b"), "<id8>"),  # short ids (audit)
    (re.compile(r"^(bytes_on_disk|data_dir)\t.*$"), r"\1\t<varies>"),
]


def _mask(line: str) -> str:
    line = line.rstrip()
    for pattern, replacement in MASKS:
        line = pattern.sub(replacement, line)
    return line


def console_examples() -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for every `$` line in a console block."""
    examples: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", README, re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                examples.append((line[2:], []))
            elif examples:
                examples[-1][1].append(line)
    return examples


def quickstart_commands() -> tuple[str, str]:
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    return blocks[0].strip(), blocks[1].strip()


def _run_session(commands: list[str], tmp_path: Path) -> list[tuple[int, list[str]]]:
    shim = tmp_path / "bin" / "memos"
    shim.parent.mkdir(exist_ok=True)
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m memos_cli \"$@\"\n")
    shim.chmod(0o755)
    marker = "@@memos-readme-end"
    script = "".join(f"{command}\necho \"{marker} $?\"\n" for command in commands)
    # As a user runs them: with the resident agent (in a private runtime folder, as
    # short as a socket's path must be), stopped at the end.
    run_dir = tempfile.mkdtemp(prefix="ma", dir="/tmp")
    env = {name: value for name, value in os.environ.items() if name != "MEMOS_NO_AGENT"}
    env.update(PATH=f"{shim.parent}:{os.environ['PATH']}", PYTHONPATH=str(ROOT),
               XDG_RUNTIME_DIR=run_dir)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    try:
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                              cwd=work, timeout=600)
    finally:
        subprocess.run([str(shim), "agent", "stop"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(run_dir, ignore_errors=True)
    results, lines = [], []
    for line in done.stdout.splitlines():
        if line.startswith(marker):
            results.append((int(line.split()[1]), lines))
            lines = []
        else:
            lines.append(line)
    assert len(results) == len(commands), done.stderr
    return results


def test_quickstart_and_ci_run_the_readme_commands(tmp_path):
    install_and_run, test_command = quickstart_commands()
    assert (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1] == test_command
    assert install_and_run.startswith("pip install . && ")
    main_job = install_and_run[len("pip install . && "):]
    [(code, out)] = _run_session([main_job], tmp_path)
    assert code == 0
    assert "My sister's birthday is on 12 March" in out[-1]


def test_every_console_example_runs_and_prints_what_the_readme_shows(tmp_path):
    examples = console_examples()
    assert len(examples) >= 15
    results = _run_session([command for command, _ in examples], tmp_path)
    for (command, expected), (code, out) in zip(examples, results):
        assert code == 0, f"{command!r} exited {code}"
        if expected:
            assert [_mask(x) for x in out] == [_mask(x) for x in expected], command
