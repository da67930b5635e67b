"""memos on a real terminal (a pseudo-terminal via pexpect): prompts, confirmation, tables."""

from __future__ import annotations

import os
import sys

import pexpect
import pytest


def spawn(*args: str) -> pexpect.spawn:
    return pexpect.spawn(sys.executable, ["-m", "memos_cli", *args], env=dict(os.environ),
                         encoding="utf-8", timeout=120, dimensions=(40, 160))


def test_passphrase_is_asked_for_on_a_terminal_and_not_echoed(cli_proc):
    assert cli_proc("remember", "the boat is moored at pier 7",
                    env={"MEMOS_PASSPHRASE": "sesame"}).code == 0
    child = spawn("list")
    child.expect("Passphrase for memos profile 'default': ")
    child.sendline("sesame")
    child.expect("pier 7")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "sesame" not in child.before


def test_wrong_passphrase_on_a_terminal_exits_4(cli_proc):
    cli_proc("remember", "x", env={"MEMOS_PASSPHRASE": "sesame"})
    child = spawn("list")
    child.expect("Passphrase")
    child.sendline("not it")
    child.expect("wrong passphrase")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 4


@pytest.mark.parametrize("answer,remaining", [("n", 1), ("y", 0)])
def test_forget_asks_before_deleting_on_a_terminal(cli_proc, answer, remaining):
    memory_id = cli_proc("remember", "delete me maybe").out.strip()
    child = spawn("forget", memory_id)
    child.expect(r"Forget 1 memory\(ies\) for good\? \[y/N\]")
    child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()
    assert len(cli_proc("list").out.splitlines()) == remaining


def test_tables_on_a_terminal(cli_proc):
    cli_proc("remember", "terminal table row", "--tag", "tty")
    child = spawn("list")
    screen = child.read()
    child.close()
    assert child.exitstatus == 0
    assert "terminal table row" in screen
    assert "│" in screen and "\t" not in screen  # a rich table, not TSV


def test_real_use_forget_query_lists_what_goes_before_asking(cli_proc):
    cli_proc("remember", "--lines",
             input="I prefer aisle seats on long flights\nThe wifi password is tulip-4471\n")
    child = spawn("forget", "--query", "where do I like to sit on a plane")
    child.expect("aisle seats on long flights")
    child.expect(r"Forget 1 memory\(ies\) for good\? \[y/N\]")
    assert "tulip" not in child.before
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert cli_proc("list").out.count("\n") == 1
