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


def test_a_flipped_byte_anywhere_is_reported_and_nothing_restored(cli, backed_up, tmp_path,
                                                                  monkeypatch):
    archive, _ = backed_up
    raw = archive.read_bytes()
    header_end = raw.index(b"}", 12) + 1
    offsets = [3, 30, header_end - 2, header_end + 2, header_end + 12, len(raw) - 1]
    offsets += [len(raw) * n // 12 for n in range(1, 12)]
    monkeypatch.setenv("MEMOS_HOME", str(tmp_path / "new-machine"))
    for offset in offsets:
        damaged = bytearray(raw)
        damaged[offset] ^= 0x20
        path = tmp_path / "damaged.memos-backup"
        path.write_bytes(bytes(damaged))
        result = cli("restore", str(path))
        # Damage anywhere, the magic and the header included, is damage (#10 item 19).
        assert result.code == 5, (offset, result.err)
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


def test_a_newer_backup_format_is_refused(cli, backed_up, tmp_path, monkeypatch):
    import struct

    archive, _ = backed_up
    raw = archive.read_bytes()
    (length,) = struct.unpack(">I", raw[8:12])
    header = json.loads(raw[12:12 + length])
    newer = json.dumps(dict(header, version=2)).encode()
    path = tmp_path / "newer.memos-backup"
    path.write_bytes(raw[:8] + struct.pack(">I", len(newer)) + newer + raw[12 + length:])
    monkeypatch.setenv("MEMOS_HOME", str(tmp_path / "elsewhere"))
    result = cli("restore", str(path))
    assert result.code == 1 and "later memos" in result.err


def test_restore_into_another_profile_keeps_its_trail_and_vault_readable(cli, monkeypatch,
                                                                        tmp_path):
    monkeypatch.setenv("MEMOS_BACKUP_PASSPHRASE", "pw")
    cli("remember", "a memory with a trail")
    cli("recall", "memory trail")
    cli("config", "set", "llm.api_key", "sk-kept")
    archive = tmp_path / "b"
    cli("backup", str(archive))
    before = cli("export").out
    restored = cli("--profile", "copy", "restore", str(archive))
    assert restored.code == 0 and "could not be read" not in restored.err
    audit = cli("--profile", "copy", "audit", "--json")
    assert audit.err == "" and [e["action"] for e in json.loads(audit.out)] == [
        "remembered", "restored"]
    assert "llm.api_key" in cli("--profile", "copy", "config", "show").out
    assert cli("--profile", "copy", "export").out == before  # recall counts included


def test_a_failed_restore_over_a_profile_leaves_it_as_it_was(cli, backed_up, monkeypatch, home):
    from memos_cli.core.store import ChromaStore

    archive, _ = backed_up
    cli("remember", "made after the backup")
    before = cli("export").out

    def fail(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as patched:
        patched.setattr(ChromaStore, "add", fail)
        assert cli("restore", str(archive), "--force").code == 1
    assert cli("export").out == before
    assert not [p.name for p in home.rglob("*.restore*")]
    assert not [c for c in _collection_names(home) if c.endswith(".restore")]


CRASH_SCRIPT = """
import os, sys
from memos_cli.engine import backup
from memos_cli.engine import MemoryEngine
from memos_cli.core.store import ChromaStore

def die(*args, **kwargs):
    os._exit(97)

point = sys.argv[2]
if point == "while-staging":
    ChromaStore.add = die
elif point == "before-commit":
    backup._finish = die
elif point == "mid-commit":
    real_drop = ChromaStore.drop
    def drop_then_die(self):
        real_drop(self)
        if not self.profile.endswith(".restore"):
            die()
    ChromaStore.drop = drop_then_die
backup.restore(MemoryEngine(), backup.Path(sys.argv[1]), "correct horse battery", force=True)
"""


@pytest.mark.parametrize("point, lands_on", [("while-staging", "old"), ("before-commit", "new"),
                                             ("mid-commit", "new")])
def test_killed_during_restore_the_profile_is_the_old_or_the_new(cli, backed_up, home, point,
                                                                 lands_on):
    import subprocess
    import sys

    archive, restored = backed_up
    cli("remember", "made after the backup")
    old = cli("export").out
    done = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(archive), point],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 97, done.stderr
    after = cli("list")  # the next command finishes or undoes the swap
    assert ("completed" if lands_on == "new" else "undone") in after.err
    assert cli("export").out == (restored if lands_on == "new" else old)
    assert not [p.name for p in home.rglob("*.restore*")]
    assert not [c for c in _collection_names(home) if c.endswith(".restore")]


def test_progress_is_reported_for_backup_and_both_passes_of_restore(engine_factory, monkeypatch,
                                                                    tmp_path):
    from memos_cli.engine import backup
    from memos_cli.engine import NewMemory

    monkeypatch.setattr(backup, "ROWS_PER_CHUNK", 3)
    eng = engine_factory()
    eng.remember_many([NewMemory(f"memory {n}") for n in range(10)])
    steps: list[tuple[int, int]] = []
    backup.write_backup(eng, tmp_path / "b", "pw", lambda done, total: steps.append((done, total)))
    assert steps == [(3, 10), (6, 10), (9, 10)]
    steps.clear()
    backup.restore(engine_factory("copy"), tmp_path / "b", "pw",
                   progress=lambda done, total: steps.append((done, total)))
    assert [done for done, _ in steps] == sorted(done for done, _ in steps)
    assert steps[-1][0] == steps[-1][1] and len(steps) > 8


def _collection_names(home) -> list[str]:
    import sqlite3

    db = sqlite3.connect(home / "data" / "chroma" / "chroma.sqlite3")
    try:
        return [name for (name,) in db.execute("SELECT name FROM collections")]
    finally:
        db.close()
