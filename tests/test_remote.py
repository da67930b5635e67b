"""memos over a Chroma server: the same commands, the same guarantees, several machines."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from chroma_server import ChromaServer
from conftest import all_bytes_under


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = ChromaServer(tmp_path_factory.mktemp("chroma-server")).start()
    yield running
    running.stop()


@pytest.fixture
def remote(server, monkeypatch, request):
    # Each test gets its own profile, so tests sharing the server stay apart.
    profile = "t" + str(abs(hash(request.node.name)) % 10**8)
    monkeypatch.setenv("MEMOS_STORE", server.url)
    monkeypatch.setenv("MEMOS_PROFILE", profile)
    return profile


def test_memory_commands_work_against_the_server(cli, remote, server):
    memory_id = cli("remember", "my bike lock code is 2468", "--tag", "bike").out.strip()
    assert len(memory_id) == 16
    cli("remember", "the dentist is on Elm Street")
    found = json.loads(cli("recall", "bike lock", "--json").out)
    assert found[0]["id"] == memory_id
    assert cli("update", memory_id[:6], "my bike lock code is 1357").code == 0
    shown = json.loads(cli("show", memory_id, "--json").out)
    assert shown["history"][0]["text"] == "my bike lock code is 2468"
    assert len(cli("list").out.splitlines()) == 2
    assert cli("forget", memory_id, "--yes").code == 0
    assert [json.loads(cli("list", "--json").out)[0]["text"]] == ["the dentist is on Elm Street"]
    assert not (server.data / "nothing").exists()


def test_the_server_never_sees_plaintext_or_unrotated_vectors(cli, remote, server):
    from memos_cli.embedding import LocalMiniLM

    canary = "canary-remote-7f3e my passport is in the red drawer"
    cli("remember", canary)
    vector = LocalMiniLM().embed([canary])[0].astype("float32").tobytes()
    needles = [canary.encode(), b"passport", b"red drawer", vector[:32], vector[192:224]]
    leaks = [(p.name, n[:10]) for p, data in all_bytes_under(server.data) for n in needles
             if n in data]
    assert leaks == []


def test_two_machines_share_one_store_without_losing_writes(cli, remote, server, tmp_path):
    cli("remember", "made on the laptop")
    key_file = tmp_path / "key.json"
    assert cli("key", "export", str(key_file)).code == 2  # no passphrase for the export
    os.environ["MEMOS_EXPORT_PASSPHRASE"] = "move-it"
    try:
        assert cli("key", "export", str(key_file)).code == 0
    finally:
        del os.environ["MEMOS_EXPORT_PASSPHRASE"]
    env = dict(os.environ, MEMOS_EXPORT_PASSPHRASE="move-it")
    desktop = dict(env, MEMOS_HOME=str(tmp_path / "desktop"))
    joined = subprocess.run([sys.executable, "-m", "memos_cli", "key", "import", str(key_file)],
                            env=desktop, capture_output=True, text=True, timeout=120)
    assert joined.returncode == 0, joined.stderr
    script = ("import sys\nfrom memos_cli.engine import MemoryEngine, NewMemory\n"
              "e = MemoryEngine()\n"
              "for n in range(25):\n"
              "    e.remember(NewMemory(f'{sys.argv[1]} memory {n}'))\n")
    machines = [subprocess.Popen([sys.executable, "-c", script, name], env=home)
                for name, home in (("laptop", dict(os.environ)), ("desktop", desktop))]
    assert [m.wait(timeout=300) for m in machines] == [0, 0]
    texts = {m["text"] for m in json.loads(cli("list", "--json").out)}
    assert len(texts) == 51
    on_desktop = subprocess.run([sys.executable, "-m", "memos_cli", "recall",
                                 "made on the laptop", "--json"], env=desktop,
                                capture_output=True, text=True, timeout=120)
    assert json.loads(on_desktop.stdout)[0]["text"] == "made on the laptop"


def test_a_store_made_with_another_key_is_refused(cli, remote, server, tmp_path):
    cli("remember", "first machine's memory")
    for command in (["list"], ["remember", "a stranger's memory"]):
        other = subprocess.run([sys.executable, "-m", "memos_cli", *command],
                               env=dict(os.environ, MEMOS_HOME=str(tmp_path / "stranger")),
                               capture_output=True, text=True, timeout=120)
        assert other.returncode == 4 and "key import" in other.stderr


def test_server_down_is_exit_7_after_retries(cli, monkeypatch):
    from chroma_server import free_port

    monkeypatch.setenv("MEMOS_STORE", f"http://127.0.0.1:{free_port()}")
    result = cli("remember", "nowhere to go")
    assert result.code == 7 and "unreachable" in result.err
    monkeypatch.setenv("MEMOS_STORE", "ftp://nope")
    assert cli("list").code == 2


def test_consolidate_says_clearly_it_needs_a_local_store(cli, remote):
    cli("remember", "I live in Leeds")
    cli("remember", "I live in Leeds, UK")
    result = cli("consolidate", "--yes")
    assert result.code == 2 and "local store" in result.err
    assert len(cli("list").out.splitlines()) == 2


def test_backup_from_local_restores_into_the_server(cli, server, monkeypatch, tmp_path):
    monkeypatch.setenv("MEMOS_BACKUP_PASSPHRASE", "backup-pw")
    cli("remember", "local memory one")
    cli("remember", "local memory two", "--kind", "fact")
    before = cli("export").out
    archive = tmp_path / "profile.memos-backup"
    assert cli("backup", str(archive)).code == 0
    monkeypatch.setenv("MEMOS_STORE", server.url)
    monkeypatch.setenv("MEMOS_PROFILE", "restored-from-local")
    monkeypatch.setenv("MEMOS_HOME", str(tmp_path / "fresh-machine"))
    assert cli("restore", str(archive)).code == 0
    assert cli("export").out == before


def test_forget_on_the_server_overwrites_the_index_copy(remote, server):
    """What forget can erase on a server: the vector in the index files. Its SQLite file
    keeps freed pages until the server's operator vacuums it (SECURITY.md says so)."""
    from conftest import HashEmbedder
    from memos_cli.engine import MemoryEngine, NewMemory

    eng = MemoryEngine(embedder=HashEmbedder())
    eng.remember_many([NewMemory(f"filler {n}") for n in range(3)])
    memory = eng.remember(NewMemory("to be forgotten on the server")).memory
    blinded = eng.store.get([memory.id], with_vectors=True)[0].vector.astype("float32").tobytes()
    eng.forget([memory.id])
    assert eng.list() and all(m.id != memory.id for m in eng.list(include_inactive=True))
    index_files = [(p, data) for p, data in all_bytes_under(server.data)
                   if p.name.endswith(".bin")]
    assert index_files and not any(blinded[:32] in data for _p, data in index_files)
