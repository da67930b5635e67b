"""SECURITY.md's claims, each tested by reading every byte memos leaves on disk."""

from __future__ import annotations

import json
import secrets

import numpy as np

from conftest import all_bytes_under
from memos_cli.search.embedding import LocalMiniLM
from memos_cli.engine import MemoryEngine, NewMemory


def _vector_fragments(vector: np.ndarray) -> list[bytes]:
    """Byte runs of a float32 vector: any stored copy would contain these."""
    raw = vector.astype(np.float32).tobytes()
    return [raw[i:i + 32] for i in range(0, len(raw), 384)]


def _traces(home, needles: list[bytes]) -> list[str]:
    found = []
    for path, data in all_bytes_under(home):
        for needle in needles:
            if needle in data:
                found.append(f"{path.relative_to(home)} holds {needle[:12]!r}")
    return found


def _canary() -> str:
    return f"canary-{secrets.token_hex(6)} my secret recovery phrase is purple-otter"


def test_canary_text_and_vector_never_reach_the_disk_and_forget_leaves_nothing(home):
    embedder = LocalMiniLM()
    eng = MemoryEngine(embedder=embedder)
    canary = _canary()
    eng.remember_many([NewMemory(f"filler memory number {n} about the garden") for n in range(5)])
    memory = eng.remember(NewMemory(canary, tags=["secret-tag-xyz"])).memory
    eng.update(memory.id, canary + " (updated)")  # an old version lives in the history
    vector = embedder.embed([canary])[0]
    needles = [canary.encode(), canary.split()[0].encode(), b"purple-otter",
               b"secret-tag-xyz", *_vector_fragments(vector)]
    assert _traces(home, needles) == []
    assert eng.recall("recovery phrase", 1)[0].memory.id == memory.id

    assert eng.forget([memory.id]) == 1
    assert all(h.memory.id != memory.id for h in eng.recall("recovery phrase purple otter", 10))
    updated_vector = embedder.embed([canary + " (updated)"])[0]
    ciphertext_gone = _traces(home, needles + _vector_fragments(updated_vector))
    assert ciphertext_gone == []
    assert len(eng.list()) == 5


def test_forget_leaves_no_ciphertext_or_blinded_vector_behind(home):
    """Even the sealed row and the rotated vector must go: a key leaked later reveals nothing."""
    eng = MemoryEngine(embedder=LocalMiniLM())
    eng.remember_many([NewMemory(f"filler {n}") for n in range(3)])
    memory = eng.remember(NewMemory(_canary())).memory
    row = eng.store.get([memory.id], with_vectors=True)[0]
    sealed = row.meta["c"].encode()
    needles = [sealed[:40], sealed[-40:], *_vector_fragments(row.vector), memory.id.encode()]
    assert _traces(home, needles[:2]) != []  # the test can see the row before
    eng.forget([memory.id])
    assert _traces(home, needles) == []


def test_chroma_metadata_holds_only_ciphertext_key_id_and_blind_hash(home):
    import sqlite3

    eng = MemoryEngine(embedder=LocalMiniLM())
    eng.remember(NewMemory("I prefer window seats", kind="preference", tags=["travel"]))
    db = sqlite3.connect(home / "data/chroma/chroma.sqlite3")
    keys = {k for (k,) in db.execute("SELECT DISTINCT key FROM embedding_metadata")}
    documents = db.execute("SELECT COUNT(*) FROM embedding_fulltext_search").fetchone()[0]
    db.close()
    assert keys == {"c", "k", "h", "v"}  # v: the vector's sealed fingerprint (#10 item 16)
    assert documents == 0


def test_forget_all_removes_collection_folders_and_keys(home):
    eng = MemoryEngine(embedder=LocalMiniLM())
    canary = _canary()
    eng.remember(NewMemory(canary))
    vector = LocalMiniLM().embed([canary])[0]
    eng.forget_all()
    chroma = home / "data" / "chroma"
    assert [p.name for p in chroma.iterdir() if p.is_dir()] == []
    assert not list((home / "config" / "keys").iterdir())
    assert _traces(home, [canary.encode(), *_vector_fragments(vector)]) == []


def test_export_to_a_file_is_private(cli, tmp_path):
    cli("remember", "something private")
    path = tmp_path / "out.jsonl"
    assert cli("export", "-o", str(path)).code == 0
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert json.loads(path.read_text().splitlines()[1])["text"] == "something private"


def test_rotation_leaves_no_old_ciphertext(home):
    eng = MemoryEngine(embedder=LocalMiniLM())
    memory = eng.remember(NewMemory(_canary())).memory
    sealed = eng.store.get([memory.id])[0].meta["c"].encode()
    eng.rotate_key()
    assert _traces(home, [sealed[:40], sealed[-40:]]) == []
    assert MemoryEngine(embedder=LocalMiniLM()).show(memory.id).text == memory.text


def test_keyword_index_is_sealed_and_forgets(home):
    from memos_cli.search.keyword import KeywordIndex

    eng = MemoryEngine(embedder=LocalMiniLM())
    eng.remember_many([NewMemory(f"filler note {n} about groceries") for n in range(3)])
    memory = eng.remember(NewMemory("zanzibarian quokkas hide in Wolverhampton")).memory
    assert eng.recall("quokkas", 1)[0].memory.id == memory.id
    index_file = home / "data" / "default.keywords"
    raw = index_file.read_bytes()
    assert b"quokka" not in raw and b"wolverhampton" not in raw and b"filler" not in raw
    eng.forget([memory.id])
    key = eng.unlock()
    reopened = KeywordIndex.load(index_file, key, "keywords/default")
    assert reopened is not None and len(reopened) == 3
    assert all("quokka" not in e.tokens for e in reopened.entries)


def test_forget_all_removes_every_file_the_profile_list_names(cli, home):
    """The one list of a profile's files (paths.ProfileFiles) is what forget --all removes,
    so a new side file cannot be left behind by being forgotten in one of five places."""
    from memos_cli.core.paths import resolve_paths

    assert cli("remember", "the safe's code is 4471").code == 0
    files = resolve_paths().profile_files("default")
    files.paths.autoconsolidate_file("default").write_text("{}")  # a background run's state
    assert cli("forget", "--all", "--yes").code == 0
    assert [p for p in files.everything if p.exists()] == []
    assert [p.name for p in (home / "data").iterdir() if p.name.startswith("default.")] == []


def test_a_forget_by_a_real_process_leaves_nothing(cli_proc, home):
    """The memos process ends with os._exit (no interpreter teardown, Chroma's clients
    not stopped): what it wrote must be complete and what it forgot gone all the same."""
    canary = _canary()
    assert cli_proc("remember", "--lines", input="\n".join(
        f"filler memory number {n} about the garden" for n in range(5))).code == 0
    made = cli_proc("remember", canary)
    assert made.code == 0
    memory_id = made.out.strip()
    eng = MemoryEngine(embedder=LocalMiniLM())
    row = eng.store.get([memory_id], with_vectors=True)[0]
    sealed = row.meta["c"].encode()
    needles = [canary.encode(), b"purple-otter", sealed[:40], sealed[-40:],
               *_vector_fragments(row.vector), memory_id.encode()]
    eng.store.close_all()
    assert _traces(home, needles[2:4]) != []  # the test can see the row before
    assert cli_proc("forget", memory_id, "--yes").code == 0
    assert _traces(home, needles) == []
    listed = cli_proc("list")
    assert listed.code == 0 and len(listed.out.splitlines()) == 5
