"""One passphrase source for every passphrase (issue 11): the value, _FD, _COMMAND, a prompt."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from memos_cli.core import passphrase
from memos_cli.core.errors import UsageError

SECRET = "correct horse battery staple"


def _print_command(text: str) -> str:
    return f"{sys.executable} -c \"print('{text}')\""


def test_the_value_then_a_file_descriptor_then_a_command():
    assert passphrase.from_environment("P", {"P": SECRET, "P_COMMAND": "false"}) == SECRET
    read_end, write_end = os.pipe()
    os.write(write_end, (SECRET + "\nsecond line is not read\n").encode())
    os.close(write_end)
    assert passphrase.from_environment("P", {"P_FD": str(read_end)}) == SECRET
    assert passphrase.from_environment("P", {"P_COMMAND": _print_command(SECRET)}) == SECRET
    assert passphrase.from_environment("P", {}) is None
    assert passphrase.given("P", {"P_COMMAND": "x"}) and not passphrase.given("P", {})


@pytest.mark.parametrize("env,message", [
    ({"P_FD": "not-a-number"}, "P_FD"),
    ({"P_FD": "987"}, "P_FD"),
    ({"P_COMMAND": f"{sys.executable} -c \"raise SystemExit(3)\""}, "exited 3"),
    ({"P_COMMAND": "/no/such/program"}, "could not be run"),
])
def test_a_broken_source_is_a_clear_usage_error(env, message):
    with pytest.raises(UsageError, match=message):
        passphrase.from_environment("P", env)


def test_required_off_a_terminal_says_every_way_to_give_it(monkeypatch):
    monkeypatch.setattr(sys, "stdin", open(os.devnull))
    with pytest.raises(UsageError, match="set B \\(or B_FD, B_COMMAND\\)"):
        passphrase.required("B", "Backup passphrase")


def test_a_profile_opens_with_a_passphrase_command_and_a_descriptor(cli_proc):
    assert cli_proc("remember", "the boat is moored at pier 7",
                    env={"MEMOS_PASSPHRASE": SECRET}).code == 0
    by_command = cli_proc("list", env={"MEMOS_PASSPHRASE_COMMAND": _print_command(SECRET)})
    assert by_command.code == 0 and "pier 7" in by_command.out
    wrong = cli_proc("list", env={"MEMOS_PASSPHRASE_COMMAND": _print_command("wrong one")})
    assert wrong.code == 4 and wrong.out == ""
    read_end, write_end = os.pipe()
    os.write(write_end, f"{SECRET}\n".encode())
    os.close(write_end)
    env = dict(os.environ, MEMOS_PASSPHRASE_FD=str(read_end))
    by_fd = subprocess.run([sys.executable, "-m", "memos_cli", "list"], env=env,
                           capture_output=True, text=True, pass_fds=(read_end,), timeout=120)
    os.close(read_end)
    assert by_fd.returncode == 0 and "pier 7" in by_fd.stdout


def test_a_backup_passphrase_from_a_command(cli_proc, tmp_path):
    assert cli_proc("remember", "the boat is moored at pier 7").code == 0
    archive = tmp_path / "b.memos-backup"
    env = {"MEMOS_BACKUP_PASSPHRASE_COMMAND": _print_command(SECRET)}
    assert cli_proc("backup", str(archive), env=env).code == 0
    restored = cli_proc("--profile", "copy", "restore", str(archive), env=env)
    assert restored.code == 0, restored.err
    assert "pier 7" in cli_proc("--profile", "copy", "list").out
