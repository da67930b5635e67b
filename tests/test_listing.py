"""`list -n N` decrypts only what it prints, from the sealed list index (issue 12 item 1),
and `show` by id reads no other memory's id."""

from __future__ import annotations

import json

import pytest

from memos_cli.core import listing, records
from memos_cli.core.errors import NotFoundError
from memos_cli.engine import NewMemory


@pytest.fixture
def opened(monkeypatch):
    """How many records were decrypted."""
    real, count = records.RecordCodec.open, []

    def counted(self, row, *args, **kwargs):
        count.append(row.id)
        return real(self, row, *args, **kwargs)

    monkeypatch.setattr(records.RecordCodec, "open", counted)
    return count


def _generation(eng) -> str:
    return (eng.paths.data_dir / "store.gen").read_text()


def _ids(memories):
    return [m.id for m in memories]


def test_list_n_decrypts_only_the_memories_it_prints(engine_factory, opened):
    eng = engine_factory()
    eng.remember_many([NewMemory(f"note {n} about the allotment") for n in range(30)])
    eng.remember(NewMemory("the newest note"))
    cold = engine_factory()
    opened.clear()
    newest = cold.list(limit=10)
    assert len(opened) == 10
    assert newest[0].text == "the newest note"
    assert _ids(newest) == _ids(engine_factory().list()[:10])


def test_list_n_through_the_index_equals_the_full_listing(engine_factory):
    eng = engine_factory()
    eng.remember_many([NewMemory(f"fact {n}", kind="fact") for n in range(6)])
    eng.remember_many([NewMemory(f"preference {n}", kind="preference") for n in range(4)])
    gone = eng.list(kind="fact")[2]
    eng.invalidate(gone.id)
    eng.forget([eng.list(kind="preference")[0].id])
    eng.remember(NewMemory("one more fact", kind="fact"))
    for filters in ({}, {"kind": "fact"}, {"include_inactive": True}, {"tier": "short"},
                    {"kind": "fact", "include_inactive": True}):
        for limit in (1, 3, 20):
            fast = engine_factory().list(limit=limit, **filters)
            assert _ids(fast) == _ids(engine_factory().list(**filters)[:limit]), filters
    assert gone.id not in _ids(engine_factory().list(limit=20))


def test_a_write_the_index_does_not_see_makes_list_read_everything(engine_factory, opened):
    """A write through the unit of work (consolidation, restore) drops the index: list
    is right all the same, by the full path, which writes the index afresh."""
    eng = engine_factory()
    eng.remember_many([NewMemory(f"note {n}") for n in range(5)])
    newest = eng.list()[0].id
    with eng.unit(write=True) as work:
        assert work is not None
        [row] = work.store.get([newest])
        memory = work.codec.open(row)
        memory.status = "archived"
        work.store.update([memory.id], [work.codec.seal(memory)])
    opened.clear()
    shown = engine_factory().list(limit=2)
    assert memory.id not in _ids(shown) and len(opened) == 5  # every memory, once
    opened.clear()
    assert _ids(engine_factory().list(limit=2)) == _ids(shown) and len(opened) == 2


def test_another_process_writing_keeps_the_index_current(engine_factory, opened):
    first, second = engine_factory(), engine_factory()
    first.remember_many([NewMemory(f"note {n}") for n in range(5)])
    second.remember(NewMemory("from the other process"))
    opened.clear()
    assert first.list(limit=1)[0].text == "from the other process"
    assert len(opened) == 1


def test_a_write_by_an_older_memos_leaves_the_index_unused(engine_factory):
    """Stamped with the generation of its last write: a write that takes a new one
    without updating it (as a memos before the index does) makes it stale."""
    eng = engine_factory()
    eng.remember_many([NewMemory(f"note {n}") for n in range(3)])
    (eng.paths.data_dir / "store.gen").write_text("a-write-by-an-older-memos")
    other = engine_factory()
    other.unlock()
    assert other.listing.current(other.unlock(), _generation(other)) is None
    assert [m.text for m in other.list(limit=5)] == ["note 2", "note 1", "note 0"]
    assert other.listing.current(other.unlock(), _generation(other)) is not None  # rebuilt


def test_the_list_index_holds_no_forgotten_id_and_no_text(engine_factory, home):
    eng = engine_factory()
    eng.remember_many([NewMemory(f"note {n} about the allotment") for n in range(3)])
    doomed = eng.remember(NewMemory("zanzibarian quokkas hide in Wolverhampton")).memory
    path = eng.paths.listing_file(eng.profile)
    assert b"quokka" not in path.read_bytes() and b"note" not in path.read_bytes()
    eng.forget([doomed.id])
    fresh = engine_factory()
    fresh.unlock()
    rows = fresh.listing.current(fresh.unlock(), _generation(fresh))
    assert rows is not None and doomed.id not in rows.ids and len(rows.ids) == 3
    assert doomed.id.encode() not in path.read_bytes()


@pytest.mark.parametrize("which", ["base", "delta"])
def test_a_list_index_file_from_a_later_memos_is_refused(engine_factory, cli, which):
    assert cli("remember", "note").code == 0
    assert cli("remember", "another note").code == 0  # (this one went to the delta)
    base, delta = _files(engine_factory())
    path, version = (base, listing.FILE_VERSION) if which == "base" else \
        (delta, listing.DELTA_FILE_VERSION)
    head, _, sealed = path.read_bytes().partition(b"\n")
    doc = json.loads(head)
    doc["version"] = version + 1
    path.write_bytes(json.dumps(doc).encode() + b"\n" + sealed)
    result = cli("list", "-n", "3")
    assert result.code != 0 and "upgrade memos" in result.err and "Traceback" not in result.err


def test_show_by_a_whole_id_reads_no_other_id(engine_factory, monkeypatch):
    from memos_cli.core.store import ChromaStore

    eng = engine_factory()
    eng.remember_many([NewMemory(f"note {n}") for n in range(5)])
    wanted = eng.remember(NewMemory("the one")).memory

    def every_id(self):
        raise AssertionError("read every id")

    monkeypatch.setattr(ChromaStore, "all_ids", every_id)
    assert engine_factory().show(wanted.id).text == "the one"
    assert engine_factory().show(wanted.id[:8]).text == "the one"  # the list index's ids


def test_forgetting_while_the_list_index_is_stale_removes_it(engine_factory):
    """A stale index is not updated by a write; one that lists a forgotten memory's id
    and times is removed instead of waiting for the next full listing."""
    eng = engine_factory()
    doomed = eng.remember(NewMemory("zanzibarian quokkas hide in Wolverhampton")).memory
    path = eng.paths.listing_file(eng.profile)
    (eng.paths.data_dir / "store.gen").write_text("another-write-unseen-by-the-index")
    engine_factory().forget([doomed.id])
    assert not path.exists()


def test_rows_added_by_a_long_lived_engine_are_written_as_a_fresh_index_would_be(engine_factory):
    """The agent's engine keeps each column's written form and adds only new rows to it:
    the result must be exactly what encoding every row afresh gives, and read back."""
    eng = engine_factory()
    for n in range(4):
        eng.remember(NewMemory(f"note {n}"))  # each remember appends to the kept form
    rows = eng.listing.current(eng.unlock(), _generation(eng))
    assert rows is not None and len(rows.ids) == 4
    fresh = listing.Columns(*(list(getattr(rows, name)) for name in listing.FIELDS))
    for name in listing.FIELDS:
        assert rows.written(name) == fresh.written(name)
    reread = engine_factory()
    again = reread.listing.current(reread.unlock(), _generation(reread))
    assert again is not None and again.ids == rows.ids and again.created == rows.created


def test_a_write_that_changes_no_row_keeps_the_list_index_current(engine_factory):
    """Every write takes a new generation; one that changed no row (a memory already
    stored, an id that is not there) must stamp the index anew, or the next `list -n`
    opens every memory (13 s at 100k)."""
    eng = engine_factory()
    eng.remember(NewMemory("The gate code is 4417"))
    eng.remember(NewMemory("The gate code is 4417"))  # already stored: nothing is added
    with pytest.raises(NotFoundError):
        eng.forget(["ffffffff"])
    fresh = engine_factory()
    assert fresh.listing.current(fresh.unlock(), _generation(fresh)) is not None


# --- the base and its delta ---------------------------------------------------------------


def _files(eng):
    return eng.paths.listing_file(eng.profile), eng.paths.listing_delta_file(eng.profile)


def test_a_remember_rewrites_the_delta_and_never_unseals_the_base(engine_factory, monkeypatch):
    """What makes a remember at 100k cheap: the 3 MB base is neither read nor written."""
    eng = engine_factory()
    eng.remember_many([NewMemory(f"note {n}") for n in range(20)])
    base, delta = _files(eng)
    before = base.read_bytes()

    def unsealed(self, keys):
        raise AssertionError("the base was unsealed")

    with monkeypatch.context() as patched:
        patched.setattr(listing.ListIndex, "_read_base", unsealed)
        for n in range(3):
            engine_factory().remember(NewMemory(f"later note {n}"))  # a new process each
    assert base.read_bytes() == before and delta.exists()
    fresh = engine_factory()
    assert [m.text for m in fresh.list(limit=4)] == [
        "later note 2", "later note 1", "later note 0", "note 19"]
    assert fresh.listing.current(fresh.unlock(), _generation(fresh)) is not None


def test_a_full_delta_is_written_into_the_base(engine_factory, monkeypatch):
    monkeypatch.setattr(listing, "DELTA_MAX", 3)
    eng = engine_factory()
    base, delta = _files(eng)
    for n in range(8):
        engine_factory().remember(NewMemory(f"note {n}"))
        rows = engine_factory()
        current = rows.listing.current(rows.unlock(), _generation(rows))
        assert current is not None and len(current.ids) == n + 1
    assert len(listing.Columns.decode(_payload(eng, base))[0].ids) > 3  # folded at least once
    for limit in (1, 5, 8):
        assert _ids(engine_factory().list(limit=limit)) == _ids(engine_factory().list()[:limit])


def _payload(eng, path, fmt=listing.FORMAT, version=listing.FILE_VERSION, context=None):
    from memos_cli.core.sealed import open_file

    return open_file(path, path.read_bytes(), fmt, version, eng.unlock(), listing.PURPOSE,
                     context or f"listing/{eng.profile}")[1]


def test_forgetting_a_memory_in_the_delta_leaves_its_id_in_no_file(engine_factory):
    eng = engine_factory()
    eng.remember_many([NewMemory(f"note {n}") for n in range(3)])
    doomed = engine_factory().remember(NewMemory("in the delta only")).memory
    base, delta = _files(eng)
    assert doomed.id in _payload(eng, delta, listing.DELTA_FORMAT, listing.DELTA_FILE_VERSION,
                                 f"listing/{eng.profile}/delta").decode()
    engine_factory().forget([doomed.id])
    assert not delta.exists() and doomed.id not in _payload(eng, base).decode()
    assert doomed.id not in _ids(engine_factory().list(limit=10))


def test_a_delta_left_from_an_older_base_is_ignored(engine_factory):
    """A crash after a new base and before the old delta's removal cannot happen (the
    delta goes first), but a delta copied back from elsewhere names another base."""
    eng = engine_factory()
    eng.remember_many([NewMemory(f"note {n}") for n in range(3)])
    doomed = engine_factory().remember(NewMemory("to be forgotten")).memory
    base, delta = _files(eng)
    old_delta = delta.read_bytes()
    engine_factory().forget([doomed.id])
    delta.write_bytes(old_delta)
    assert doomed.id not in _ids(engine_factory().list(limit=10))
    fresh = engine_factory()
    rows = fresh.listing.current(fresh.unlock(), _generation(fresh))
    assert rows is not None and doomed.id not in rows.ids


def test_a_header_that_does_not_match_its_sealed_base_is_not_trusted(engine_factory):
    """The base's stamp is readable without the key; what is sealed inside decides."""
    eng = engine_factory()
    eng.remember_many([NewMemory(f"note {n}") for n in range(3)])
    base, _delta = _files(eng)
    (eng.paths.data_dir / "store.gen").write_text("a-write-the-index-did-not-see")
    head, _, sealed = base.read_bytes().partition(b"\n")
    doc = json.loads(head)
    doc["gen"] = "a-write-the-index-did-not-see"
    base.write_bytes(json.dumps(doc).encode() + b"\n" + sealed)
    other = engine_factory()
    assert other.listing.current(other.unlock(), _generation(other)) is None
    assert [m.text for m in other.list(limit=5)] == ["note 2", "note 1", "note 0"]


def test_a_version_1_list_index_is_read_and_rewritten_as_version_2(engine_factory):
    from memos_cli.core.sealed import seal_file

    eng = engine_factory()
    eng.remember_many([NewMemory(f"note {n}") for n in range(3)])
    base, delta = _files(eng)
    rows = listing.Columns(*(list(c) for c in eng.listing.current(
        eng.unlock(), _generation(eng)).columns()))
    keys = eng.unlock()
    doc = json.loads(rows.encode(gen=_generation(eng)))  # version 1: no token, no tags
    del doc["tags"]
    old = json.dumps(doc).encode()
    base.write_bytes(seal_file(listing.FORMAT, 1, keys.current, listing.PURPOSE, old,
                               f"listing/{eng.profile}"))
    delta.unlink(missing_ok=True)
    fresh = engine_factory()
    assert fresh.listing.current(fresh.unlock(), _generation(fresh)) is not None
    assert fresh.listing.tagged(_generation(fresh)) is None  # its tags are unknown: ask Chroma
    fresh.remember(NewMemory("after the upgrade"))
    assert not fresh.remember(NewMemory("note 1")).created
    assert json.loads(base.read_bytes().partition(b"\n")[0])["version"] == listing.FILE_VERSION
    assert [m.text for m in engine_factory().list(limit=2)] == ["after the upgrade", "note 2"]


# --- text tags: exact duplicates found without Chroma's lookup by metadata ------------------


def _no_metadata_lookup(monkeypatch):
    from memos_cli.core.store import ChromaStore

    def find(self, where):
        raise AssertionError("asked Chroma by metadata")

    monkeypatch.setattr(ChromaStore, "find", find)


def test_a_warm_engine_finds_duplicates_in_the_list_index(engine_factory, monkeypatch):
    """What the agent does between commands (keep_warm): a remember then looks its text
    up among the list index's tags, not with Chroma's lookup that reads every row."""
    eng = engine_factory()
    eng.remember_many([NewMemory(f"The locker code is {n}") for n in range(20)])
    eng.keep_warm()
    with monkeypatch.context() as patched:
        _no_metadata_lookup(patched)
        assert not eng.remember(NewMemory("The locker code is 7")).created
        assert eng.remember(NewMemory("The locker code is 70")).created  # a look-alike
        assert not eng.remember(NewMemory("The locker code is 70")).created  # the tag just added
        results = eng.remember_many([NewMemory("The locker code is 3"), NewMemory("new one"),
                                     NewMemory("new one")])
        assert [r.created for r in results] == [False, True, False]
    texts = [m.text for m in engine_factory().all_memories()]
    assert len(texts) == 22 and len(set(texts)) == 22


def test_a_text_stored_by_another_process_is_a_duplicate_for_a_warm_engine(engine_factory):
    warm = engine_factory()
    warm.remember_many([NewMemory(f"note {n}") for n in range(5)])
    warm.keep_warm()
    assert warm.listing.tagged(_generation(warm)) is not None
    engine_factory().remember(NewMemory("The gate code is 4417"))  # another process
    assert not warm.remember(NewMemory("The gate code is 4417")).created
    assert [m.text for m in engine_factory().all_memories()].count("The gate code is 4417") == 1


def test_an_edit_changes_the_tag_the_list_index_holds(engine_factory, monkeypatch):
    eng = engine_factory()
    kept = eng.remember(NewMemory("The wifi password is tulip-42")).memory
    eng.remember_many([NewMemory(f"note {n}") for n in range(3)])
    eng.update(kept.id, "The wifi password is orchid-17")
    eng.keep_warm()
    _no_metadata_lookup(monkeypatch)
    assert eng.remember(NewMemory("The wifi password is tulip-42")).created  # no longer stored
    assert not eng.remember(NewMemory("The wifi password is orchid-17")).created
