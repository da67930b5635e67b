"""The memory engine as a library: every operation, on a small real Chroma store."""

from __future__ import annotations

import json
import os
import secrets
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import HashEmbedder
from memos_cli.engine import NewMemory
from memos_cli.core.errors import (BadInputError, NotFoundError, StoreMismatchError, UsageError,
                              WrongKeyError)
from memos_cli.core.timeparse import now_utc
from memos_cli.core.transfer import export_text, parse_import


def test_remember_then_recall_finds_it_first(engine_factory):
    eng = engine_factory()
    eng.remember(NewMemory("my sister lives in Lisbon", kind="fact", tags=["family"]))
    eng.remember(NewMemory("buy oat milk and coffee beans"))
    hits = eng.recall("where does my sister live", limit=2)
    assert hits[0].memory.text == "my sister lives in Lisbon"
    assert len(hits) == 1  # the oat milk is not relevant: below the floor, not printed
    assert hits[0].memory.kind == "fact" and hits[0].memory.tags == ["family"]


def test_exact_same_text_is_not_stored_twice(engine_factory):
    eng = engine_factory()
    first = eng.remember(NewMemory("I am allergic to penicillin"))
    again = eng.remember(NewMemory("  I am allergic to penicillin "))
    assert first.created and not again.created
    assert again.memory.id == first.memory.id
    assert len(eng.list()) == 1


def test_remember_many_dedups_within_the_batch(engine_factory):
    eng = engine_factory()
    results = eng.remember_many([NewMemory("alpha"), NewMemory("beta"), NewMemory("alpha")])
    assert [r.created for r in results] == [True, True, False]
    assert len(eng.list()) == 2


def test_empty_text_is_a_usage_error(engine_factory):
    with pytest.raises(UsageError):
        engine_factory().remember(NewMemory("   "))


def test_prefix_resolution_like_git(engine_factory):
    eng = engine_factory()
    memory = eng.remember(NewMemory("the wifi password is on the fridge")).memory
    assert eng.show(memory.id[:6]).id == memory.id
    with pytest.raises(UsageError):
        eng.show(memory.id[:3])  # too short to be safe
    with pytest.raises(NotFoundError):
        eng.show("ffffffffffff")


def test_ambiguous_prefix_is_refused(engine_factory, monkeypatch):
    import memos_cli.engine.writing as writing_module

    ids = iter(["abcd000000000001", "abcd000000000002"])
    monkeypatch.setattr(writing_module, "new_id", lambda: next(ids))
    eng = engine_factory()
    eng.remember_many([NewMemory("one"), NewMemory("two")])
    with pytest.raises(NotFoundError, match="ambiguous"):
        eng.show("abcd")
    assert eng.show("abcd000000000002").text == "two"


def test_update_keeps_history_and_re_embeds(engine_factory):
    eng = engine_factory()
    memory = eng.remember(NewMemory("I work at Acme", kind="fact")).memory
    eng.update(memory.id, "I work at Globex")
    shown = eng.show(memory.id)
    assert shown.text == "I work at Globex"
    assert [v.text for v in shown.history] == ["I work at Acme"]
    assert eng.recall("globex", 1)[0].memory.id == memory.id
    # The old text no longer counts as stored: it can be remembered again.
    assert eng.remember(NewMemory("I work at Acme")).created


def test_update_to_another_memorys_text_is_refused(engine_factory):
    eng = engine_factory()
    a = eng.remember(NewMemory("apples")).memory
    eng.remember(NewMemory("pears"))
    with pytest.raises(UsageError, match="already has that text"):
        eng.update(a.id, "pears")


def test_filters_kind_tag_and_time(engine_factory):
    eng = engine_factory()
    old = now_utc() - timedelta(days=30)
    eng.remember(NewMemory("dentist appointment went fine", kind="event", occurred_at=old))
    eng.remember(NewMemory("dentist is Dr Silva", kind="fact", tags=["health"]))
    assert [h.memory.kind for h in eng.recall("dentist", kind="event")] == ["event"]
    assert [h.memory.tags for h in eng.recall("dentist", tag="HEALTH")] == [["health"]]
    recent = eng.recall("dentist", since=now_utc() - timedelta(days=1))
    assert [h.memory.kind for h in recent] == ["fact"]
    older = eng.list(until=now_utc() - timedelta(days=7))
    assert [m.kind for m in older] == ["event"]


def test_recall_fills_the_limit_past_filtered_candidates(engine_factory):
    eng = engine_factory()
    eng.remember_many([NewMemory(f"project note {n}") for n in range(60)])
    eng.remember(NewMemory("project deadline friday", tags=["rare"]))
    hits = eng.recall("zebra", limit=1, tag="rare", floor=0)  # filtering, not relevance
    assert [h.memory.text for h in hits] == ["project deadline friday"]


def test_list_is_newest_first_with_limit(engine_factory):
    eng = engine_factory()
    for text in ("first", "second", "third"):
        eng.remember(NewMemory(text))
    listed = eng.list()
    assert len(listed) == 3
    assert [m.created_at for m in listed] == sorted((m.created_at for m in listed), reverse=True)
    assert len(eng.list(limit=2)) == 2


def test_forget_removes_and_reports_count(engine_factory):
    eng = engine_factory()
    keep = eng.remember(NewMemory("keep me")).memory
    drop = eng.remember(NewMemory("drop me")).memory
    assert eng.forget([drop.id[:8]]) == 1
    assert [m.id for m in eng.list()] == [keep.id]
    with pytest.raises(NotFoundError):
        eng.show(drop.id)


def test_forget_all_destroys_the_keys(engine_factory, home):
    eng = engine_factory()
    eng.remember(NewMemory("secret thing"))
    assert eng.forget_all() == 1
    assert not list((home / "config" / "keys").glob("default*"))
    assert engine_factory().list() == []


def test_profiles_are_separate_sets_with_separate_keys(engine_factory, home):
    work, personal = engine_factory("work"), engine_factory("personal")
    work.remember(NewMemory("standup at nine"))
    personal.remember(NewMemory("mum's birthday in May"))
    assert [m.text for m in work.list()] == ["standup at nine"]
    assert [m.text for m in personal.list()] == ["mum's birthday in May"]
    keys = {json.loads(p.read_text())["key_id"] for p in (home / "config/keys").glob("*.json")}
    assert len(keys) == 2


def test_reading_an_empty_home_creates_nothing(engine_factory, home):
    eng = engine_factory()
    assert eng.list() == [] and eng.recall("anything") == []
    assert not (home / "config" / "keys").exists()


def test_export_import_round_trip_is_lossless(engine_factory, home, monkeypatch, tmp_path):
    eng = engine_factory()
    memory = eng.remember(NewMemory("I moved to Berlin", kind="event", tags=["move"],
                                    occurred_at=now_utc() - timedelta(days=3))).memory
    eng.update(memory.id, "I moved to Berlin in spring")
    eng.remember(NewMemory("Ünïcode ✓ and\ttabs\nand newlines"))
    first = export_text(eng.all_memories(), "jsonl")
    monkeypatch.setenv("MEMOS_HOME", str(tmp_path / "other"))
    fresh = engine_factory()
    result = fresh.import_memories(parse_import(first))
    assert (result.added, result.skipped) == (2, 0)
    assert export_text(fresh.all_memories(), "jsonl") == first
    assert fresh.import_memories(parse_import(first)).added == 0  # re-import adds nothing
    as_json = export_text(fresh.all_memories(), "json")
    assert export_text(parse_import(as_json), "jsonl") == first


def test_malformed_import_names_the_line_and_imports_nothing(engine_factory):
    good = [json.dumps({"id": f"{n:016x}", "text": f"memory {n}"}) for n in range(10)]
    good[2] = '{"id": "0000000000000002", "text": broken'
    with pytest.raises(BadInputError, match="line 3"):
        parse_import("\n".join(good))
    good[2] = json.dumps({"id": "0000000000000002", "text": "x", "kind": "nonsense"})
    with pytest.raises(BadInputError, match="line 3: invalid kind"):
        parse_import("\n".join(good))
    assert engine_factory().list() == []


def test_embedding_model_mismatch_is_refused_then_reindex_fixes_it(engine_factory):
    eng = engine_factory()
    eng.remember(NewMemory("the cat is called Miso"))

    class Other(HashEmbedder):
        model_id = "other-model"
        dim = 16

    other = engine_factory(embedder=Other())
    with pytest.raises(StoreMismatchError, match="reindex"):
        other.list()
    assert other.reindex() == 1
    assert other.recall("cat Miso", 1)[0].memory.text == "the cat is called Miso"
    assert other.stats()["embedding_dim"] == 16


def test_interrupted_write_is_rolled_back_at_next_open(engine_factory, home):
    eng = engine_factory()
    eng.remember(NewMemory("already here"))
    store = eng.store

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C in the middle of a batch

    real_add = store.add

    def half_then_crash(ids, vectors, metas):
        real_add(ids[:1], vectors[:1], metas[:1])
        crash()

    store.add = half_then_crash
    with pytest.raises(KeyboardInterrupt):
        eng.remember_many([NewMemory("new one"), NewMemory("new two")])
    assert [m.text for m in engine_factory().list()] == ["already here"]


def test_journal_left_by_a_killed_process_is_replayed(engine_factory, home):
    eng = engine_factory()
    eng.remember(NewMemory("already here"))
    ghost = eng.remember(NewMemory("half written")).memory
    journal = home / "data" / "default.journal"
    journal.write_text(json.dumps({"version": 1, "add": [ghost.id]}))
    fresh = engine_factory()
    assert [m.text for m in fresh.list()] == ["already here"]
    assert not journal.exists()
    assert any("rolled back" in n for n in fresh.notices)


def test_wrong_store_key_is_detected(engine_factory, home):
    engine_factory().remember(NewMemory("x marks the spot"))
    key_file = home / "config/keys/default.json"
    saved = key_file.read_text()
    key_file.unlink()
    (home / "config/keys/default.secret").unlink()
    engine_factory().keys.create()  # a new, unrelated key
    with pytest.raises(WrongKeyError, match="another key"):
        engine_factory().list()
    key_file.write_text(saved)


def test_newer_store_and_payload_and_export_formats_are_refused(engine_factory):
    from memos_cli.core.errors import VersionError
    from memos_cli.core.memory import memory_from_payload

    eng = engine_factory()
    eng.remember(NewMemory("format check"))
    meta = eng.store.meta()
    eng.store.set_meta({**meta, "memos_format": 99})
    with pytest.raises(VersionError, match="later version"):
        engine_factory().list()
    with pytest.raises(VersionError):
        memory_from_payload({"v": 99, "m": {}})
    with pytest.raises(VersionError, match="later memos"):
        parse_import('{"memos_export": 3}\n')


def test_invalidate_keeps_the_memory_but_recall_skips_it(engine_factory):
    eng = engine_factory()
    memory = eng.remember(NewMemory("my phone is a Pixel 6")).memory
    eng.invalidate(memory.id)
    assert eng.recall("phone", 5) == []
    shown = eng.show(memory.id)
    assert shown.status == "invalid" and shown.valid_to and shown.history[-1].reason == "invalidated"
    assert [m.id for m in eng.list(include_inactive=True)] == [memory.id]


def test_supersede_links_new_to_old_and_ends_the_old(engine_factory):
    eng = engine_factory()
    old = eng.remember(NewMemory("I live in Leeds", kind="fact")).memory
    before, after = eng.supersede(old.id[:6], NewMemory("I live in York", kind="fact"))
    assert before.status == "invalid" and before.valid_to
    assert after.derived_from == [old.id] and after.valid_from
    assert [h.memory.text for h in eng.recall("where do I live", 5)] == ["I live in York"]


def test_recall_puts_a_memory_that_answers_before_one_that_asks(engine_factory):
    # Issue 14: a question shares the query's words but rarely holds the answer. Here the
    # question is the closer match by fused rank; the statement must still come first.
    eng = engine_factory()
    eng.remember_many([NewMemory(text) for text in (
        "buy oat milk", "the car needs new tyres", "dentist appointment on tuesday",
        "call the plumber about the sink", "renew the passport before june")])
    eng.remember(NewMemory("which books are in the library ?"))
    eng.remember(NewMemory("the library has kids books and classics"))
    hits = eng.recall("books in the library", limit=2, floor=0)
    assert [h.memory.text for h in hits] == ["the library has kids books and classics",
                                             "which books are in the library ?"]


def test_recall_puts_the_named_persons_turn_before_anothers(engine_factory):
    # Issue 14: "what did Caroline like" is about Caroline's own turns, even when another
    # speaker's turn holds more of the query's words. (All episodes: conversation turns.)
    eng = engine_factory()
    eng.remember_many([NewMemory(text, kind="episode") for text in (
        "buy oat milk", "the car needs new tyres", "dentist appointment on tuesday",
        "call the plumber about the sink", "renew the passport before june")])
    eng.remember(NewMemory("Melanie: Caroline and I liked the class", kind="episode"))
    eng.remember(NewMemory("Caroline: the pottery class was fun", kind="episode"))
    hits = eng.recall("which class did Caroline like", limit=2, floor=0)
    assert [h.memory.text for h in hits] == ["Caroline: the pottery class was fun",
                                             "Melanie: Caroline and I liked the class"]


def test_real_use_wifi_finds_wi_fi_by_its_words(engine_factory):
    """A hyphenated word is also indexed whole: "wifi" matches "Wi-Fi" on keywords."""
    eng = engine_factory()
    eng.remember(NewMemory("The Wi-Fi password is tulip-4471"))
    eng.remember(NewMemory("The door code is 1234"))
    [hit] = eng.recall("wifi password", 1, floor=0.0)
    assert hit.memory.text == "The Wi-Fi password is tulip-4471" and hit.coverage == 1.0


def test_a_keyword_index_tokenized_by_an_older_rule_is_rebuilt(engine_factory, monkeypatch):
    from memos_cli.search import keyword

    eng = engine_factory()
    eng.remember(NewMemory("The Wi-Fi password is tulip-4471"))
    path = eng.paths.keyword_file(eng.profile)
    with eng.unit(write=False) as work:
        assert work is not None
        index = work.keyword_index()
        monkeypatch.setattr(keyword, "INDEX_VERSION", 1)
        index.save(path, work.keys, f"keywords/{eng.profile}")
        monkeypatch.setattr(keyword, "INDEX_VERSION", 2)
        assert keyword.KeywordIndex.load(path, work.keys, f"keywords/{eng.profile}") is None


def test_a_cold_recall_reads_the_keyword_index_once(engine_factory, monkeypatch):
    """The index read before the lock (to embed the query) is the one used under it,
    unless a write replaced the file in between; it used to be read and decrypted twice."""
    from memos_cli.search import keyword
    from memos_cli.engine.indexing import load_keywords

    engine_factory().remember(NewMemory("The Wi-Fi password is tulip-4471"))
    real, reads = keyword.KeywordIndex.load, []

    def counted(*args, **kwargs):
        reads.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(keyword.KeywordIndex, "load", counted)
    cold = engine_factory()
    assert cold.recall("wifi password", 1, floor=0.0)
    assert len(reads) == 1
    replaced = engine_factory()
    replaced.unlock()
    load_keywords(replaced._state)  # read ahead, then another process rewrites the index
    engine_factory().remember(NewMemory("The door code is 1234"))
    assert [h.memory.text for h in replaced.recall("door code", 1, floor=0.0)] == [
        "The door code is 1234"]
    assert len(reads) > 2


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="counts descriptors in /proc")
def test_a_long_lived_engine_keeps_no_files_open_per_foreign_write(engine_factory, home):
    """The agent and `memos mcp` keep one engine for hours while other processes write:
    each write made it reopen Chroma, and the old client's files stayed open (~5 per
    write) until the process ran out of descriptors."""
    eng = engine_factory()
    eng.remember(NewMemory("The shed key is under the mat"))
    eng.recall("shed key")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        (home / "data" / "store.gen").write_text(secrets.token_hex(8))  # another process wrote
        assert eng.recall("shed key")
    assert len(os.listdir("/proc/self/fd")) - before < 10
