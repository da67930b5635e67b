"""memos over a Chroma server: the same commands, the same guarantees, several machines.

Most tests share one real server (``chroma_server``, one per session), each in its
own profile; the tests that stop a server use a private one; the stand-in server
of fake_chroma.py plays the servers a real one cannot be made into (old version,
token required, self-signed TLS).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid

import numpy as np
import pytest

from chroma_server import ChromaServer, chroma_server, free_port  # noqa: F401  (a fixture)
from conftest import HashEmbedder, all_bytes_under
from fake_chroma import FakeChroma


@pytest.fixture
def remote(chroma_server, monkeypatch):  # noqa: F811
    """The shared server, in a profile of this test's own."""
    profile = "t" + uuid.uuid4().hex[:12]
    monkeypatch.setenv("MEMOS_STORE", chroma_server.url)
    monkeypatch.setenv("MEMOS_PROFILE", profile)
    return profile


@pytest.fixture(scope="module")
def private_server(tmp_path_factory):
    """A server the tests in this module may stop (each leaves it running)."""
    running = ChromaServer(tmp_path_factory.mktemp("private-chroma")).start()
    yield running
    running.stop()


@pytest.fixture
def quick_retries(monkeypatch):
    from memos_cli.core.store import Remote

    monkeypatch.setattr(Remote, "RETRIES", (0.05, 0.05))


def memos(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memos_cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_memory_commands_work_against_the_server(cli, remote, chroma_server, home):  # noqa: F811
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
    assert not (home / "data" / "chroma").exists()  # nothing went to a local store


def holds_vector(data: bytes, vector: np.ndarray, tolerance: float = 1e-4) -> bool:
    """Whether ``data`` holds ``vector`` as float32, as sent or normalised (the index
    normalises vectors for cosine distance, which changes their last bits)."""
    target = (vector / np.linalg.norm(vector)).astype("<f4")
    with np.errstate(all="ignore"):
        for shift in range(min(4, len(data) - 4 * len(target) + 1)):  # blobs are unaligned
            floats = np.frombuffer(data, "<f4", count=(len(data) - shift) // 4, offset=shift)
            for start in np.flatnonzero(np.abs(floats - target[0]) < tolerance):
                window = floats[start:start + len(target)]
                if len(window) == len(target) and np.allclose(window, target, atol=tolerance):
                    return True
    return False


def test_the_server_never_sees_plaintext_or_unrotated_vectors(cli, remote, chroma_server):  # noqa: F811
    from memos_cli.search.embedding import LocalMiniLM
    from memos_cli.engine import MemoryEngine

    canary = "canary-remote-7f3e my passport is in the red drawer"
    cli("remember", canary)
    cli("update", cli("list").out.split("\t")[0], canary + " upstairs")
    vectors = LocalMiniLM().embed([canary, canary + " upstairs"])
    needles = [canary.encode(), b"passport", b"red drawer", b"upstairs"]
    files = all_bytes_under(chroma_server.data)
    assert [p.name for p, data in files for n in needles if n in data] == []
    assert [p.name for p, data in files for v in vectors if holds_vector(data, v)] == []
    stored = MemoryEngine().store
    assert stored.exists()  # and what the server does hold is what the check would find:
    assert any(holds_vector(data, row.vector) for row in stored.scan(with_vectors=True)
               for _p, data in files)


def test_two_machines_share_one_store_without_losing_writes(cli, remote, tmp_path, monkeypatch):
    cli("remember", "made on the laptop")
    key_file = tmp_path / "key.json"
    assert cli("key", "export", str(key_file)).code == 2  # no passphrase for the export
    monkeypatch.setenv("MEMOS_EXPORT_PASSPHRASE", "move-it")
    assert cli("key", "export", str(key_file)).code == 0
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    desktop = dict(os.environ, MEMOS_HOME=str(tmp_path / "desktop"))
    wrong = memos("key", "import", str(key_file), env=dict(desktop, MEMOS_EXPORT_PASSPHRASE="no"))
    assert wrong.returncode == 4
    joined = memos("key", "import", str(key_file), env=desktop)
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
    on_desktop = memos("recall", "made on the laptop", "--json", env=desktop)
    assert json.loads(on_desktop.stdout)[0]["text"] == "made on the laptop"


def test_joining_after_setting_a_secret_keeps_it_and_a_used_key_is_kept(cli, remote, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setenv("MEMOS_EXPORT_PASSPHRASE", "move-it")
    cli("remember", "first machine's memory")
    key_file = tmp_path / "key.json"
    cli("key", "export", str(key_file))
    assert cli("key", "import", str(key_file)).code == 2  # this key has memories: refused
    monkeypatch.setenv("MEMOS_HOME", str(tmp_path / "second"))
    # The second machine set a secret first, which made a key of its own; it opens no store.
    assert cli("config", "set", "llm.api_key", "sk-second").code == 0
    joined = cli("key", "import", str(key_file))
    assert joined.code == 0, joined.err
    assert "llm.api_key" in cli("config", "show").out
    assert json.loads(cli("list", "--json").out)[0]["text"] == "first machine's memory"


def test_a_store_made_with_another_key_is_refused(cli, remote, tmp_path, monkeypatch):
    cli("remember", "first machine's memory")
    for command in (["list"], ["remember", "a stranger's memory"]):
        other = memos(*command, env=dict(os.environ, MEMOS_HOME=str(tmp_path / "stranger")))
        assert other.returncode == 4 and "key import" in other.stderr
    # A key rotated on one machine: the other is told to import it again, and can.
    monkeypatch.setenv("MEMOS_EXPORT_PASSPHRASE", "move-it")
    cli("key", "export", str(tmp_path / "old.key"))
    second = dict(os.environ, MEMOS_HOME=str(tmp_path / "second"))
    assert memos("key", "import", str(tmp_path / "old.key"), env=second).returncode == 0
    assert cli("key", "rotate").code == 0
    stale = memos("list", env=second)
    assert stale.returncode == 4 and "key import" in stale.stderr
    cli("key", "export", str(tmp_path / "new.key"))
    assert memos("key", "import", str(tmp_path / "new.key"), env=second).returncode == 0
    assert "first machine's memory" in memos("list", env=second).stdout


def test_server_down_is_exit_7_after_retries(cli, monkeypatch, home, quick_retries):
    monkeypatch.setenv("MEMOS_STORE", f"http://127.0.0.1:{free_port()}")
    result = cli("remember", "nowhere to go")
    assert result.code == 7 and "unreachable" in result.err and "3 times" in result.err
    assert not (home / "config" / "keys").exists()
    for wrong in ("ftp://nope", "http://host:8000/under/a/path"):
        monkeypatch.setenv("MEMOS_STORE", wrong)
        assert cli("list").code == 2


def test_server_dying_mid_write_is_exit_7_and_nothing_half_written(cli, private_server, home,
                                                                   monkeypatch, quick_retries):
    from memos_cli.core.store import ChromaStore

    monkeypatch.setenv("MEMOS_STORE", private_server.url)
    cli("remember", "written before the outage")
    real_add = ChromaStore.add

    def add_then_lose_the_server(self, ids, vectors, metas):
        real_add(self, ids[:2], vectors[:2], metas[:2])
        private_server.stop()
        real_add(self, ids[2:], vectors[2:], metas[2:])

    monkeypatch.setattr(ChromaStore, "add", add_then_lose_the_server)
    lines = "".join(f"batch memory {n}\n" for n in range(5))
    result = cli("remember", "--lines", input=lines)
    assert result.code == 7 and "unreachable" in result.err
    assert (home / "data" / f"{os.environ.get('MEMOS_PROFILE', 'default')}.journal").exists()
    monkeypatch.setattr(ChromaStore, "add", real_add)
    private_server.start()
    after = cli("list", "--json")
    assert [m["text"] for m in json.loads(after.out)] == ["written before the outage"]
    assert "rolled back" in after.err


def test_server_dying_mid_forget_is_exit_7_and_the_next_run_finishes_it(
        cli, private_server, monkeypatch, quick_retries):
    from memos_cli.core.store import ChromaStore

    monkeypatch.setenv("MEMOS_STORE", private_server.url)
    monkeypatch.setenv("MEMOS_PROFILE", "midforget")
    doomed = cli("remember", "forget me during the outage").out.strip()
    cli("remember", "keep me")
    real_update = ChromaStore.update

    def overwrite_then_lose_the_server(self, *args, **kwargs):
        real_update(self, *args, **kwargs)  # the noise is written; the delete is not
        private_server.stop()

    with monkeypatch.context() as patched:
        patched.setattr(ChromaStore, "update", overwrite_then_lose_the_server)
        assert cli("forget", doomed, "--yes").code == 7
    private_server.start()
    after = cli("list", "--json")
    assert after.code == 0 and [m["text"] for m in json.loads(after.out)] == ["keep me"]
    assert cli("show", doomed).code == 3


def test_a_server_back_within_the_retries_loses_nothing(cli, private_server, monkeypatch):
    from memos_cli.core.store import Remote

    monkeypatch.setenv("MEMOS_STORE", private_server.url)
    monkeypatch.setenv("MEMOS_PROFILE", "blip")
    monkeypatch.setattr(Remote, "RETRIES", (0.5, 1.0, 2.0, 4.0))
    private_server.stop()
    threading.Timer(0.3, private_server.start).start()
    result = cli("remember", "written through a blip")
    assert result.code == 0, result.err
    assert "written through a blip" in cli("list").out


def test_forget_on_the_server_erases_the_index_copy_and_vacuum_erases_the_rest(
        private_server, monkeypatch):
    """What forget can erase on a server: the vector in the index files. The server's
    SQLite file keeps the row in freed space until its operator runs `chroma vacuum`
    (SECURITY.md says so); afterwards nothing of the memory is left in any file."""
    from memos_cli.engine import MemoryEngine, NewMemory

    monkeypatch.setenv("MEMOS_STORE", private_server.url)
    monkeypatch.setenv("MEMOS_PROFILE", "vacuumed")
    eng = MemoryEngine(embedder=HashEmbedder())
    eng.remember_many([NewMemory(f"filler {n} word{n}") for n in range(50)])
    memory = eng.remember(NewMemory("to be forgotten on the server")).memory
    # Enough rows after it that the server moves it from its buffer into the index files.
    eng.remember_many([NewMemory(f"later filler {n} word{n}") for n in range(150)])
    row = eng.store.get([memory.id], with_vectors=True)[0]
    traces = [row.meta["c"][40:80].encode(), row.meta["h"].encode(), memory.id.encode()]

    def left_in(files):
        return [p.name for p, data in files
                if holds_vector(data, row.vector) or any(t in data for t in traces)]

    def index_files():
        return [(p, data) for p, data in all_bytes_under(private_server.data)
                if p.suffix in (".bin", ".pickle")]

    assert left_in(index_files())  # the check can see it there
    eng.forget([memory.id])
    assert left_in(index_files()) == []
    private_server.stop()
    try:
        subprocess.run(["chroma", "vacuum", "--path", str(private_server.data), "--force"],
                       check=True, capture_output=True, timeout=120)
        assert left_in(all_bytes_under(private_server.data)) == []
    finally:
        private_server.start()


def test_the_token_is_sent_and_a_refused_one_is_exit_4(cli, monkeypatch):
    fake = FakeChroma(token="s3cret")
    try:
        monkeypatch.setenv("MEMOS_STORE", fake.url)
        refused = cli("list")
        assert refused.code == 4 and "refused the token" in refused.err
        assert "s3cret" not in refused.err
        monkeypatch.setenv("MEMOS_STORE_TOKEN", "s3cret")
        assert cli("list").code == 0
        monkeypatch.delenv("MEMOS_STORE_TOKEN")
        # Kept in the vault: settable before the server can be reached.
        assert cli("config", "set", "store.token", "s3cret").code == 0
        assert cli("list").code == 0
        assert fake.headers[-1]["authorization"] == "Bearer s3cret"
    finally:
        fake.stop()


@pytest.mark.parametrize("version, status, message", [
    ("0.5.23", 200, "needs a 1.x server"),
    ("", 404, "does not answer like a Chroma 1.x server")])
def test_an_unsupported_server_is_refused(cli, monkeypatch, version, status, message):
    fake = FakeChroma(version=version, version_status=status)
    try:
        monkeypatch.setenv("MEMOS_STORE", fake.url)
        result = cli("remember", "not here")
        assert result.code == 1 and message in result.err
    finally:
        fake.stop()


# chromadb hands the CA file to httpx as a path, which httpx now deprecates.
@pytest.mark.filterwarnings("ignore:`verify=<str>` is deprecated:DeprecationWarning")
def test_tls_with_a_certificate_from_a_private_ca(cli, monkeypatch, tmp_path):
    fake = FakeChroma(tls_dir=tmp_path)
    try:
        monkeypatch.setenv("MEMOS_STORE", fake.url)
        untrusted = cli("list")
        assert untrusted.code == 1 and "not trusted" in untrusted.err, untrusted.err
        assert cli("config", "set", "store.ca", str(fake.ca)).code == 0
        assert cli("list").code == 0
        assert fake.headers  # the client got through TLS and asked
    finally:
        fake.stop()


def test_consolidate_says_clearly_it_needs_a_local_store(cli, remote):
    cli("remember", "I live in Leeds")
    cli("remember", "i live in Leeds.")  # the same fact said twice: a merge is planned
    result = cli("consolidate", "--yes")
    assert result.code == 2 and "local store" in result.err
    assert len(cli("list").out.splitlines()) == 2


def test_backup_from_local_restores_into_the_server_and_back(cli, chroma_server, monkeypatch,  # noqa: F811
                                                             tmp_path):
    monkeypatch.setenv("MEMOS_BACKUP_PASSPHRASE", "backup-pw")
    cli("remember", "local memory one")
    cli("remember", "local memory two", "--kind", "fact")
    before = cli("export").out
    archive = tmp_path / "local.memos-backup"
    assert cli("backup", str(archive)).code == 0
    monkeypatch.setenv("MEMOS_STORE", chroma_server.url)
    monkeypatch.setenv("MEMOS_PROFILE", "restored-" + uuid.uuid4().hex[:8])
    monkeypatch.setenv("MEMOS_HOME", str(tmp_path / "fresh-machine"))
    assert cli("restore", str(archive)).code == 0
    assert cli("export").out == before
    cli("remember", "made on the server")
    from_server = tmp_path / "server.memos-backup"
    assert cli("backup", str(from_server)).code == 0
    assert cli("restore", str(archive), "--force").code == 0  # replaced, on the server
    assert cli("export").out == before
    assert not [c for c in _collections(chroma_server) if c.endswith(".restore")]
    monkeypatch.delenv("MEMOS_STORE")
    monkeypatch.setenv("MEMOS_HOME", str(tmp_path / "third-machine"))
    assert cli("restore", str(from_server)).code == 0
    assert "made on the server" in cli("list").out


def _collections(server: ChromaServer) -> list[str]:
    import chromadb

    client = chromadb.HttpClient(host="127.0.0.1", port=server.port)
    return [c.name for c in client.list_collections()]
