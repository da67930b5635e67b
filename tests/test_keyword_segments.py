"""The keyword index on disk (issue 12 item 1): a compiled base loaded as arrays, and a
small sealed delta that `remember` rewrites instead of the whole index."""

from __future__ import annotations

import json
import zlib

import pytest

from memos_cli.search import keyword
from memos_cli.engine import NewMemory
from memos_cli.core.errors import VersionError
from memos_cli.core.sealed import open_file, seal_file


def _files(eng):
    return eng.paths.keyword_file(eng.profile), eng.paths.keyword_delta_file(eng.profile)


def _identity(path):
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _delta_doc(eng) -> dict:
    _base, delta = _files(eng)
    _key_id, payload = open_file(delta, delta.read_bytes(), keyword.DELTA_FORMAT,
                                 keyword.DELTA_FILE_VERSION, eng.unlock(), keyword.PURPOSE,
                                 f"keywords/{eng.profile}/delta")
    return json.loads(zlib.decompress(payload))


def _best(eng, query: str) -> str:
    """The text of the memory with the best keyword score (recall's ranking also weighs
    the test embedder's vectors, which rank near-ties at random on tiny stores)."""
    with eng.unit(write=False) as work:
        assert work is not None
        ids, scores = work.keyword_index().scores(query)
        return next(m.text for _r, m in work.open_rows(work.store.get([ids[scores.argmax()]])))


def test_remember_rewrites_the_delta_not_the_base(engine_factory):
    eng = engine_factory()
    eng.remember_many([NewMemory(f"note {n} about the allotment") for n in range(5)])
    base, delta = _files(eng)
    before = _identity(base)
    eng.remember(NewMemory("The boiler service is booked for March"))
    assert _identity(base) == before  # the whole index is not rewritten per remember
    assert delta.exists() and len(_delta_doc(eng)["entries"]) == 6
    assert _best(engine_factory(), "boiler service") == "The boiler service is booked for March"


def test_a_cold_process_loads_the_postings_without_compiling_them(engine_factory,
                                                                   monkeypatch):
    eng = engine_factory()
    monkeypatch.setattr(keyword, "DELTA_MAX", 0)  # every save folds the delta into the base
    eng.remember_many([NewMemory(f"note {n} about the allotment") for n in range(5)])
    eng.remember(NewMemory("The boiler service is booked for March"))
    assert not _files(eng)[1].exists()
    real, compiled = keyword._Compiled.of, []

    def counted(*args, **kwargs):
        compiled.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(keyword._Compiled, "of", counted)
    assert engine_factory().recall("boiler", 1, floor=0.0)
    assert compiled == []
    assert _best(engine_factory(), "boiler") == "The boiler service is booked for March"


def test_the_delta_is_folded_into_the_base_when_it_grows(engine_factory, monkeypatch):
    monkeypatch.setattr(keyword, "DELTA_MAX", 3)
    eng = engine_factory()
    for n in range(3):
        eng.remember(NewMemory(f"note {n} about the allotment"))
    base, delta = _files(eng)
    assert delta.exists()
    before = _identity(base)
    eng.remember(NewMemory("note 3 about the allotment"))
    assert _identity(base) != before and not delta.exists()
    index = keyword.KeywordIndex.load(base, eng.unlock(), f"keywords/{eng.profile}")
    assert index is not None and len(index) == 4


def test_forgetting_a_memory_in_the_delta_leaves_none_of_it_in_any_index_file(engine_factory):
    eng = engine_factory()
    eng.remember_many([NewMemory(f"filler note {n} about groceries") for n in range(3)])
    doomed = eng.remember(NewMemory("zanzibarian quokkas hide in Wolverhampton")).memory
    assert doomed.id in [row[0] for row in _delta_doc(eng)["entries"]]  # it lives in the delta
    eng.forget([doomed.id])
    base, delta = _files(eng)
    stored = [(row[0], row[2]) for row in _delta_doc(eng)["entries"]] if delta.exists() else []
    index = keyword.KeywordIndex.load(base, eng.unlock(), f"keywords/{eng.profile}")
    assert index is not None
    stored += [(e.id, " ".join(e.tokens)) for e in index.entries]
    assert len(index) == 3 and stored
    assert all(i != doomed.id and "quokka" not in words and "wolverhampton" not in words
               for i, words in stored)
    for path in (base, delta):
        if path.exists():
            assert b"quokka" not in path.read_bytes() and doomed.id.encode() not in path.read_bytes()


def test_forgetting_a_memory_in_the_base_rewrites_the_base_without_it(engine_factory,
                                                                      monkeypatch):
    eng = engine_factory()
    monkeypatch.setattr(keyword, "DELTA_MAX", 0)
    doomed = eng.remember(NewMemory("zanzibarian quokkas hide in Wolverhampton")).memory
    monkeypatch.setattr(keyword, "DELTA_MAX", 100)
    eng.remember(NewMemory("filler note about groceries"))
    eng.forget([doomed.id])
    base, delta = _files(eng)
    index = keyword.KeywordIndex.load(base, eng.unlock(), f"keywords/{eng.profile}")
    assert index is not None and [e.tokens for e in index.entries] == [
        keyword.tokenize("filler note about groceries")]
    assert not delta.exists()  # folded in with the rewrite


def _write_version_2(eng) -> None:
    """The index as memos wrote it before issue 12: one file of JSON entries."""
    base, delta = _files(eng)
    index = keyword.KeywordIndex.load(base, eng.unlock(), f"keywords/{eng.profile}")
    assert index is not None
    rows = [[e.id, e.thread, " ".join(e.tokens)] for e in index.entries]
    payload = zlib.compress(json.dumps({"v": 2, "entries": rows}).encode())
    base.write_bytes(seal_file(keyword.INDEX_FORMAT, 2, eng.unlock().current, keyword.PURPOSE,
                               payload, f"keywords/{eng.profile}"))
    delta.unlink(missing_ok=True)


def test_a_version_2_keyword_index_is_migrated_at_first_open(engine_factory):
    eng = engine_factory()
    eng.remember_many([NewMemory("The Wi-Fi password is tulip-4471"),
                       NewMemory("The door code is 1234")])
    _write_version_2(eng)
    base, _delta = _files(eng)
    assert _best(engine_factory(), "wifi password") == "The Wi-Fi password is tulip-4471"
    header = json.loads(base.read_bytes().partition(b"\n")[0])
    assert header["version"] == keyword.INDEX_FILE_VERSION  # rewritten by a read command
    index = keyword.KeywordIndex.load(base, eng.unlock(), f"keywords/{eng.profile}")
    assert index is not None and len(index) == 2 and not index.needs_save


@pytest.mark.parametrize("which", ["base", "delta"])
def test_a_keyword_index_file_from_a_later_memos_is_refused(cli, engine_factory, which):
    eng = engine_factory()
    eng.remember_many([NewMemory("The door code is 1234")])
    eng.remember(NewMemory("The Wi-Fi password is tulip-4471"))
    path = dict(zip(["base", "delta"], _files(eng)))[which]
    head, _, sealed = path.read_bytes().partition(b"\n")
    doc = json.loads(head)
    doc["version"] += 1
    path.write_bytes(json.dumps(doc).encode() + b"\n" + sealed)
    with pytest.raises(VersionError, match="later memos"):
        engine_factory().recall("door code", 1)
    result = cli("recall", "door code")
    assert result.code != 0 and "upgrade memos" in result.err and "Traceback" not in result.err


def test_a_delta_left_beside_another_base_is_not_used(engine_factory, monkeypatch):
    """A delta names the base it extends: one beside another base (a crash between the
    two writes) makes the index count as missing, rebuilt from the memories."""
    eng = engine_factory()
    monkeypatch.setattr(keyword, "DELTA_MAX", 0)
    oldest = eng.remember(NewMemory("note 0 about the allotment")).memory
    monkeypatch.setattr(keyword, "DELTA_MAX", 100)
    eng.remember(NewMemory("The boiler service is booked for March"))
    base, delta = _files(eng)
    stale = delta.read_bytes()
    eng.forget([oldest.id])  # in the base: rewrites it, a new generation
    delta.write_bytes(stale)
    assert keyword.KeywordIndex.load(base, eng.unlock(), f"keywords/{eng.profile}") is None
    assert _best(engine_factory(), "boiler") == "The boiler service is booked for March"


def test_a_key_rotation_reseals_base_and_delta_under_the_new_key(engine_factory):
    eng = engine_factory()
    eng.remember_many([NewMemory(f"note {n} about the allotment") for n in range(3)])
    eng.remember(NewMemory("The boiler service is booked for March"))
    eng.rotate_key()
    base, delta = _files(eng)
    new_id = eng.unlock().current.key_id
    assert json.loads(base.read_bytes().partition(b"\n")[0])["key_id"] == new_id
    assert not delta.exists() or json.loads(
        delta.read_bytes().partition(b"\n")[0])["key_id"] == new_id
    index = keyword.KeywordIndex.load(base, eng.unlock(), f"keywords/{eng.profile}")
    assert index is not None and len(index) == 4
    ids, scores = index.scores("boiler")
    assert eng.show(ids[int(scores.argmax())]).text == "The boiler service is booked for March"


def test_a_cold_remember_does_not_unseal_the_base(engine_factory, monkeypatch):
    eng = engine_factory()
    monkeypatch.setattr(keyword, "DELTA_MAX", 0)
    eng.remember_many([NewMemory(f"note {n} about the allotment") for n in range(5)])
    monkeypatch.setattr(keyword, "DELTA_MAX", 100)
    real, unsealed = keyword._Compiled.from_saved, []

    def counted(*args, **kwargs):
        unsealed.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(keyword._Compiled, "from_saved", counted)
    cold = engine_factory()
    cold.remember(NewMemory("The boiler service is booked for March"))
    cold.remember(NewMemory("The gutters need clearing"))
    assert unsealed == []  # only the delta was read and rewritten
    assert len(_delta_doc(cold)["entries"]) == 2
    assert _best(cold, "boiler") == "The boiler service is booked for March"  # loads it whole
    assert unsealed == [1]


def test_a_damaged_delta_makes_remember_rebuild_the_index(engine_factory):
    eng = engine_factory()
    eng.remember_many([NewMemory(f"note {n} about the allotment") for n in range(3)])
    _base, delta = _files(eng)
    blob = bytearray(delta.read_bytes())
    blob[-3] ^= 0x01
    delta.write_bytes(bytes(blob))
    engine_factory().remember(NewMemory("The boiler service is booked for March"))
    assert _best(engine_factory(), "boiler") == "The boiler service is booked for March"
    index = keyword.KeywordIndex.load(_base, eng.unlock(), f"keywords/{eng.profile}")
    assert index is not None and len(index) == 4
