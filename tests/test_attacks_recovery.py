"""Issue 10, recovery and robustness attacks: crashes, lost keys, hostile backups, full disks.

Each test reproduces one attack from the issue (``test_attack_NN_*``, NN the item number).
"""

from __future__ import annotations

import json

import pytest

from memos_cli.consolidation import FAILPOINT_ENV

BACKUP_PASSPHRASE = "correct horse battery"


TEXTS = ["I live in Leeds", "I live in Leeds, UK", "water the plants"]


@pytest.fixture
def crashed_consolidation(cli, cli_proc, monkeypatch):
    """Two near-duplicates and one other memory; a consolidation killed half-way through."""
    monkeypatch.setenv("MEMOS_BACKUP_PASSPHRASE", BACKUP_PASSPHRASE)
    for text in TEXTS:
        assert cli("remember", text).code == 0
    before = cli("export").out

    def crash() -> None:
        result = cli_proc("consolidate", "--yes", env={FAILPOINT_ENV: "consolidate:mid-apply"})
        assert result.code == 97, result.err  # died after merging, before committing

    return before, crash


def _texts(cli, *profile: str) -> list[str]:
    listed = cli(*profile, "list", "--json")
    assert listed.code == 0, listed.err
    return sorted(m["text"] for m in json.loads(listed.out))


@pytest.mark.parametrize("command", [("key", "rotate"), ("reindex",), ("restore", "--force")])
def test_attack_01_crashed_consolidation_then_any_locking_command_keeps_every_memory(
        cli, crashed_consolidation, tmp_path, command):
    before, crash = crashed_consolidation
    archive = tmp_path / "b.memos-backup"  # made under another key than the crashed profile's
    for text in TEXTS:
        cli("--profile", "src", "remember", text)
    assert cli("--profile", "src", "backup", str(archive)).code == 0
    crash()
    args = [*command, str(archive)] if command[0] == "restore" else list(command)
    result = cli(*args)
    assert result.code == 0, result.err
    assert "interrupted consolidation was rolled back" in result.err
    assert _texts(cli) == TEXTS
    assert cli("export").out.count('"id"') == before.count('"id"')


def test_attack_05_restore_into_a_new_profile_after_a_crashed_consolidation(
        cli, crashed_consolidation, tmp_path):
    _before, crash = crashed_consolidation
    archive = tmp_path / "b.memos-backup"
    assert cli("backup", str(archive)).code == 0
    crash()
    restored = cli("--profile", "other", "restore", str(archive))
    assert restored.code == 0 and "restored 3" in restored.err, restored.err
    assert len(_texts(cli, "--profile", "other")) == 3
    assert len(_texts(cli)) == 3  # the crashed profile came back as it was
