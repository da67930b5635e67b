"""Backup and restore: whole, encrypted, checked, all or nothing."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def backed_up(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("MEMOS_BACKUP_PASSPHRASE", "correct horse battery")
    for n in range(7):
        cli("remember", f"memory number {n} about the allotment", "--tag", f"t{n % 2}")
    memory_id = json.loads(cli("list", "--json").out)[0]["id"]
    cli("update", memory_id, "an edited memory about the allotment")
    before = cli("export").out
    archive = tmp_path / "profile.memos-backup"
    assert cli("backup", str(archive)).code == 0
    return archive, before


def test_backup_forget_everything_restore_is_byte_for_byte(cli, backed_up):
    archive, before = backed_up
    assert cli("forget", "--all", "--yes").code == 0
    assert cli("list").out == ""
    assert cli("restore", str(archive)).code == 0
    assert cli("export").out == before
    assert json.loads(cli("recall", "allotment", "--json").out)
    assert any(e["action"] == "restored" for e in json.loads(cli("audit", "--json").out))


def test_the_backup_holds_no_plaintext(backed_up):
    archive, _ = backed_up
    raw = archive.read_bytes()
    assert b"allotment" not in raw and b"memory number" not in raw
    assert oct(archive.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("where", ["header", "first chunk", "middle", "last byte"])
def test_a_flipped_byte_anywhere_is_reported_and_nothing_restored(cli, backed_up, tmp_path,
                                                                  monkeypatch, where):
    archive, _ = backed_up
    raw = bytearray(archive.read_bytes())
    offset = {"header": 30, "first chunk": raw.index(b"}", 12) + 12,
              "middle": len(raw) // 2, "last byte": len(raw) - 1}[where]
    raw[offset] ^= 0x20
    damaged = tmp_path / "damaged.memos-backup"
    damaged.write_bytes(bytes(raw))
    monkeypatch.setenv("MEMOS_HOME", str(tmp_path / "new-machine"))
    result = cli("restore", str(damaged))
    assert result.code in (5, 4), result.err  # a damaged header can look like a wrong key
    assert cli("list").out == ""
    assert not (tmp_path / "new-machine" / "config" / "keys").exists()


def test_a_truncated_backup_is_reported(cli, backed_up, tmp_path, monkeypatch):
    archive, _ = backed_up
    cut = tmp_path / "cut.memos-backup"
    cut.write_bytes(archive.read_bytes()[:-40])
    monkeypatch.setenv("MEMOS_HOME", str(tmp_path / "elsewhere"))
    result = cli("restore", str(cut))
    assert result.code == 5 and "cut short" in result.err


def test_wrong_passphrase_and_not_a_backup(cli, backed_up, tmp_path, monkeypatch):
    archive, _ = backed_up
    monkeypatch.setenv("MEMOS_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("MEMOS_BACKUP_PASSPHRASE", "wrong")
    assert cli("restore", str(archive)).code == 4
    junk = tmp_path / "junk"
    junk.write_text("hello")
    assert cli("restore", str(junk)).code == 8


def test_restore_refuses_a_profile_that_is_not_empty_unless_forced(cli, backed_up):
    archive, before = backed_up
    cli("remember", "something new since the backup")
    refused = cli("restore", str(archive))
    assert refused.code == 2 and "--force" in refused.err
    assert cli("restore", str(archive), "--force").code == 0
    assert cli("export").out == before


def test_backup_of_an_empty_profile_is_a_clear_error(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("MEMOS_BACKUP_PASSPHRASE", "x")
    result = cli("backup", str(tmp_path / "b"))
    assert result.code == 2 and "empty" in result.err
