"""The memory lifecycle on small, realistic stores: time, tiers, consolidation, provenance, audit."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from conftest import all_bytes_under
from memos_cli.engine import consolidation
from memos_cli.engine import NewMemory
from memos_cli.core.transfer import export_text

START = datetime(2026, 1, 10, 9, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch):
    import memos_cli.engine.recall as recall_module
    import memos_cli.engine.state as state_module
    import memos_cli.core.timeparse as timeparse_module
    import memos_cli.engine.writing as writing_module

    fake = Clock()
    # Every engine module that reads the clock (audit events, writes, recall's access counts).
    for module in (state_module, writing_module, recall_module, consolidation, timeparse_module):
        monkeypatch.setattr(module, "now_utc", fake)
    return fake


def _texts(hits):
    return [h.memory.text for h in hits]


def test_a_fact_that_changes_twice_keeps_every_version_in_time(engine_factory, clock):
    eng = engine_factory()
    first = eng.remember(NewMemory("I work at Acme as a designer", kind="fact")).memory
    clock.advance(days=100)
    _, second = eng.supersede(first.id, NewMemory("I work at Globex as a designer", kind="fact"))
    clock.advance(days=100)
    _, third = eng.supersede(second.id, NewMemory("I work at Initech as a designer", kind="fact"))
    clock.advance(days=1)
    assert _texts(eng.recall("where do I work", 5)) == ["I work at Initech as a designer"]
    then = START + timedelta(days=150)
    assert _texts(eng.recall("where do I work", 5, at=then)) == ["I work at Globex as a designer"]
    assert _texts(eng.recall("where do I work", 5, at=START + timedelta(days=1))) == [
        "I work at Acme as a designer"]
    old = eng.show(second.id)
    assert old.status == "invalid" and old.valid_to and old.history[-1].reason == "superseded"
    assert eng.show(third.id).derived_from == [second.id]


def test_one_fact_said_twice_merges_into_the_newest_wording_keeping_history(engine_factory, clock):
    eng = engine_factory()
    a = eng.remember(NewMemory("my sister Ana lives in Lisbon", tags=["family"])).memory
    clock.advance(hours=1)
    b = eng.remember(NewMemory("My sister Ana lives in Lisbon.", tags=["ana"])).memory
    eng.remember(NewMemory("my sister Ana lives in Lisbon now"))  # says more: kept apart
    eng.remember(NewMemory("buy coffee beans"))
    plan = consolidation.plan(eng)
    merges = [act for act in plan.actions if act.kind == "merge"]
    assert [(m.into, m.ids) for m in merges] == [(b.id, [a.id])]
    consolidation.apply(eng, plan)
    survivor, merged = eng.show(b.id), eng.show(a.id)
    assert merged.status == "archived"
    assert survivor.text == b.text and survivor.derived_from == [a.id]
    assert survivor.tags == ["ana", "family"] and survivor.created_at == a.created_at
    assert [(v.text, v.source_id) for v in survivor.history] == [(a.text, a.id)]
    assert _texts(eng.recall("where does my sister live", 5)).count(a.text) == 0


def test_an_episode_yields_three_facts_with_a_model(engine_factory, clock):
    eng = engine_factory()
    episode = eng.remember(NewMemory(
        "User: I adopted a cat called Miso, I'm learning the cello, and I moved to Porto.",
        kind="episode", source="chat", source_ref="session-1")).memory
    clock.advance(days=30)

    def summarise(texts):
        assert texts == [episode.text]
        return ["The user has a cat called Miso.", "The user is learning the cello.",
                "The user lives in Porto."]

    plan = consolidation.plan(eng, summarise=summarise)
    assert plan.count("summarise") == 1
    consolidation.apply(eng, plan)
    facts = [m for m in eng.list() if m.source == "consolidation"]
    assert sorted(m.text for m in facts) == sorted(summarise([episode.text]))
    assert all(m.tier == "long" and m.derived_from == [episode.id] for m in facts)
    assert eng.show(episode.id).status == "archived"


def test_without_a_model_summaries_are_skipped_and_said_so(engine_factory, clock):
    eng = engine_factory()
    eng.remember(NewMemory("User: long chat about gardening", kind="episode"))
    clock.advance(days=30)
    plan = consolidation.plan(eng)
    assert plan.count("summarise") == 0
    assert any("no model" in note for note in plan.skipped)


def test_unused_for_months_is_archived_and_often_used_is_promoted(engine_factory, clock):
    eng = engine_factory()
    stale = eng.remember(NewMemory("parking spot 42 at the old office", importance=0.1)).memory
    used = eng.remember(NewMemory("the gate code is 1234")).memory
    for _ in range(3):
        eng.recall("gate code", 1)
    clock.advance(days=120)
    eng.recall("gate code", 1)
    plan = consolidation.plan(eng)
    kinds = {a.kind: a.ids for a in plan.actions}
    assert kinds["archive"] == [stale.id] and kinds["promote"] == [used.id]
    consolidation.apply(eng, plan)
    assert eng.show(used.id).tier == "long"
    assert [m.id for m in eng.list(tier="long")] == [used.id]
    assert stale.id not in [m.id for m in eng.list()]  # archived: out of list and recall
    assert eng.prune() == 1
    assert stale.id not in [m.id for m in eng.list(include_inactive=True)]


def test_tier_caps_come_from_the_config(engine_factory, clock, home):
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.toml").write_text("version = 1\n[lifecycle]\ncap_long = 1\n")
    eng = engine_factory()
    eng.remember(NewMemory("always answer in British English", kind="instruction", importance=0.9))
    eng.remember(NewMemory("I prefer short answers", kind="preference", importance=0.3))
    plan = consolidation.plan(eng)
    assert [(a.kind, eng.show(a.ids[0]).text) for a in plan.actions] == [
        ("demote", "I prefer short answers")]


def test_forgetting_a_source_forgets_the_summary_made_from_it(engine_factory, clock, home):
    eng = engine_factory()
    secret = "my safe combination is 31-07-99"
    source = eng.remember(NewMemory(f"User: {secret}", kind="episode", source_ref="s1")).memory
    eng.remember(NewMemory("User: the weather was nice", kind="episode", source_ref="s2"))
    clock.advance(days=30)
    consolidation.apply(eng, consolidation.plan(eng, summarise=lambda texts: [
        f"The user said: {t.split(': ', 1)[1]}" for t in texts]))
    assert any(secret in m.text for m in eng.list())
    doomed, _ = eng.forget_preview([source.id])
    assert len(doomed) == 2  # the episode and the summary made from it
    eng.forget([source.id])
    assert not any(secret in h.memory.text for h in eng.recall("safe combination", 10))
    assert secret not in export_text(eng.all_memories(), "jsonl")
    assert [p for p, data in all_bytes_under(home) if secret.encode() in data] == []
    assert "weather" in export_text(eng.all_memories(), "jsonl")


def test_forgetting_a_merged_memory_rebuilds_the_survivor(engine_factory, clock):
    eng = engine_factory()
    b = eng.remember(NewMemory("my gym locker is number 12")).memory
    clock.advance(minutes=5)  # the newer wording survives a merge
    a = eng.remember(NewMemory("My gym locker is number 12!")).memory
    consolidation.apply(eng, consolidation.plan(eng))
    assert eng.show(a.id).history
    eng.forget([b.id])
    survivor = eng.show(a.id)
    assert survivor.history == [] and survivor.derived_from == []


def test_audit_trail_records_changes_and_forgets_what_was_forgotten(engine_factory, clock, home):
    eng = engine_factory()
    eng.cause = "command: memos remember"
    kept = eng.remember(NewMemory("kept memory")).memory
    gone = eng.remember(NewMemory("the diary is under the mattress")).memory
    eng.update(kept.id, "kept memory, edited")
    eng.forget([gone.id])
    events = eng.audit()
    assert [e.action for e in events] == ["remembered", "remembered", "updated", "forgotten"]
    assert events[0].cause == "command: memos remember"
    assert all(gone.id not in e.ids for e in events)
    assert events[-1].ids == [] and events[-1].count == 1
    raw = (home / "data" / "default.audit").read_bytes()
    assert b"remembered" not in raw and gone.id.encode() not in raw and b"diary" not in raw
    assert eng.audit(since=START + timedelta(days=1)) == []


def test_time_words_in_a_query_favour_that_time(engine_factory, clock):
    eng = engine_factory()
    eng.remember(NewMemory("dinner with Sam at the Thai place", kind="event",
                           occurred_at=START - timedelta(days=60)))
    eng.remember(NewMemory("dinner with Sam at the pizza place", kind="event",
                           occurred_at=START - timedelta(days=8)))
    clock.advance(hours=1)
    top = eng.recall("dinner with Sam last week", 2)[0].memory
    assert top.text == "dinner with Sam at the pizza place"
    top = eng.recall("dinner with Sam in November", 2)[0].memory
    assert top.text == "dinner with Sam at the Thai place"


def test_interrupted_apply_rolls_back_everything(engine_factory, clock, monkeypatch):
    eng = engine_factory()
    eng.remember(NewMemory("my gym locker is number 12"))
    eng.remember(NewMemory("My gym locker is number 12."))
    eng.remember(NewMemory("very important thing", importance=0.95))
    before = export_text(eng.all_memories(), "jsonl")
    calls = []
    real = consolidation._apply_one

    def ctrl_c_on_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(consolidation, "_apply_one", ctrl_c_on_second)
    with pytest.raises(KeyboardInterrupt):
        consolidation.apply(eng, consolidation.plan(eng))
    assert export_text(engine_factory().all_memories(), "jsonl") == before


CRASH_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from conftest import HashEmbedder
from memos_cli.engine import consolidation
from memos_cli.engine import MemoryEngine
eng = MemoryEngine(embedder=HashEmbedder())
plan = consolidation.plan(eng)
print(plan.to_json())
consolidation.apply(eng, plan)
"""


@pytest.mark.parametrize("point", ["consolidate:snapshot-taken", "consolidate:mid-apply",
                                   "consolidate:before-commit", "none"])
def test_killed_during_consolidate_the_store_is_before_or_after(engine_factory, point, tmp_path):
    from pathlib import Path

    eng = engine_factory()
    eng.remember_many([NewMemory("my gym locker is number 12"),
                       NewMemory("My gym locker is number 12."),
                       NewMemory("very important thing", importance=0.95),
                       NewMemory("water the plants")])
    before = export_text(eng.all_memories(), "jsonl")
    tests = str(Path(__file__).parent)
    env = {**__import__("os").environ, consolidation.FAILPOINT_ENV: point}
    done = subprocess.run([sys.executable, "-c", CRASH_SCRIPT.format(tests=tests)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == (0 if point == "none" else 97), done.stderr
    reopened = engine_factory()
    after = export_text(reopened.all_memories(), "jsonl")
    if point == "none":
        assert after != before, reopened.notices
        assert sum(m.status == "archived" for m in reopened.list(
            include_inactive=True)) == 1
    else:
        assert after == before
        assert any("rolled back" in n for n in reopened.notices) or point == "none"
    assert not list(reopened.paths.data_dir.glob(".consolidation-*"))


def test_consolidate_cli_dry_run_json_and_yes(cli, clock):
    cli("remember", "I live in Leeds")
    cli("remember", "i live in Leeds.")
    dry = cli("consolidate", "--dry-run")
    assert dry.code == 0 and dry.out.startswith("merge into")
    plan = json.loads(cli("consolidate", "--dry-run", "--json").out)
    assert plan["summary"]["merge"] == 1
    refused = cli("consolidate")
    assert refused.code == 2 and "--yes" in refused.err
    assert cli("consolidate", "--yes").code == 0
    assert len(cli("list").out.splitlines()) == 1
    audit = cli("audit", "--json")
    assert {e["action"] for e in json.loads(audit.out)} >= {"remembered", "merged"}


def test_consolidates_by_itself_after_enough_new_memories(cli, home, monkeypatch):
    import time

    monkeypatch.delenv("MEMOS_NO_AUTO_CONSOLIDATE")
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.toml").write_text("version = 1\n[lifecycle]\nauto_after = 3\n")
    for text in ("I live in Leeds", "i live in Leeds.", "tea"):
        assert cli("remember", text).code == 0
    deadline = time.time() + 120
    while time.time() < deadline:
        events = json.loads(cli("audit", "--json").out)
        if any(e["action"] == "merged" for e in events):
            break
        time.sleep(0.5)
    assert any(e["cause"] == "consolidation (automatic, after new memories)" for e in events)


def test_contradictions_need_a_model_and_the_newer_supersedes(engine_factory, clock):
    eng = engine_factory()
    old = eng.remember(NewMemory("the user lives in Leeds city centre", kind="fact")).memory
    clock.advance(days=10)
    new = eng.remember(NewMemory("the user lives in York city centre", kind="fact")).memory
    without = consolidation.plan(eng)
    assert without.count("supersede") == 0
    assert any("contradictions" in note and "no model" in note for note in without.skipped)
    asked = []

    def judge(older, newer):
        asked.append((older, newer))
        return "Leeds" in older and "York" in newer

    plan = consolidation.plan(eng, judge=judge)
    assert asked == [(old.text, new.text)] and plan.count("supersede") == 1
    consolidation.apply(eng, plan)
    assert eng.show(old.id).status == "invalid" and eng.show(old.id).valid_to
    assert eng.show(new.id).derived_from == [old.id]
    assert [h.memory.id for h in eng.recall("where does the user live", 5)] == [new.id]


def test_real_use_recall_at_reads_the_text_that_was_current_then(engine_factory, clock, cli):
    eng = engine_factory()
    memory = eng.remember(NewMemory("I live in Munich", kind="fact")).memory
    clock.advance(days=10)
    eng.update(memory.id, "I live in Berlin")
    clock.advance(days=10)
    eng.update(memory.id, importance=0.9)  # not a change of text: Berlin stays current
    clock.advance(days=1)
    then = START + timedelta(days=5)
    assert _texts(eng.recall("where do I live", 5, at=then)) == ["I live in Munich"]
    assert _texts(eng.recall("where do I live", 5, at=START + timedelta(days=15))) == [
        "I live in Berlin"]
    assert _texts(eng.recall("where do I live", 5)) == ["I live in Berlin"]
    assert [m.text for m in eng.list(at=then)] == ["I live in Munich"]
    assert eng.show(memory.id).text == "I live in Berlin"  # show is always today's


def test_real_use_a_correction_reads_corrected_at_every_time(clock, cli):
    memory_id = cli("remember", "I live in Munchen", "--kind", "fact").out.strip()
    clock.advance(days=10)
    assert cli("update", memory_id, "I live in Munich", "--correction").code == 0
    clock.advance(days=1)
    earlier = (START + timedelta(days=5)).isoformat()
    recalled = json.loads(cli("recall", "where do I live", "--at", earlier, "--json").out)
    assert [hit["text"] for hit in recalled] == ["I live in Munich"]
    shown = json.loads(cli("show", memory_id, "--json").out)
    assert [(v["text"], v["reason"]) for v in shown["history"]] == [("I live in Munchen",
                                                                     "corrected")]


def test_real_use_a_merged_fact_was_known_since_it_was_first_said(engine_factory, clock):
    eng = engine_factory()
    eng.remember(NewMemory("The gate code is 4471", kind="fact"))
    clock.advance(days=10)
    newest = eng.remember(NewMemory("the gate code is 4471.", kind="fact")).memory
    clock.advance(days=1)
    consolidation.apply(eng, consolidation.plan(eng))
    then = START + timedelta(days=5)
    assert [h.memory.id for h in eng.recall("gate code", 5, at=then)] == [newest.id]


def test_a_dry_run_with_nothing_to_do_changes_nothing(cli):
    from memos_cli.engine import MemoryEngine

    assert cli("remember", "water the plants").code == 0
    assert cli("consolidate", "--dry-run").code == 0
    with MemoryEngine().unit(write=False) as work:
        assert work is not None
        assert work.store.meta()["new_since_consolidation"] == 1  # still counted as new
