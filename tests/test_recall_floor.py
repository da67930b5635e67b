"""Recall that can say nothing (#9 §5): an absolute relevance score and a floor, tested
with the real embedding model (the default, built in), through the command line."""

from __future__ import annotations

import json

import pytest

from memos_cli.core.config import RECALL_FLOOR

FACTS = [
    "I prefer aisle seats on long flights",
    "Dentist appointment with Dr. Rivera on Tuesday at 3pm",
    "My sister Ana lives in Lisbon",
    "The wifi password at home is tulip-4471",
    "I am allergic to penicillin",
    "Call the plumber about the boiler",
]


@pytest.fixture
def facts(cli):
    assert cli("remember", "--lines", input="\n".join(FACTS)).code == 0
    return cli


@pytest.mark.parametrize("query", ["zzqqxx nonexistent gibberish", "asdkjh qwpoeiru zxcmnb",
                                   "what is the capital of Mongolia", "how do volcanoes form",
                                   "who won the football match yesterday"])
def test_real_use_recall_prints_nothing_when_nothing_is_relevant(facts, query):
    result = facts("recall", query)
    assert result.code == 3 and result.out == "" and "nothing relevant found" in result.err
    as_json = facts("recall", query, "--json")
    assert as_json.code == 3 and json.loads(as_json.out) == []


@pytest.mark.parametrize("query, found", [
    ("where do I like to sit on a plane", "aisle seats"),
    ("when do I see the dentist", "Dr. Rivera"),
    ("what's the internet password", "tulip-4471"),
    ("which medicine must I avoid", "penicillin"),
    ("who should fix the heating", "plumber"),
    ("where does my sister live", "Lisbon"),
])
def test_real_use_recall_paraphrase_finds_its_memory_and_only_it(facts, query, found):
    result = facts("recall", query)
    lines = result.out.splitlines()
    assert result.code == 0 and len(lines) == 1 and found in lines[0]
    assert RECALL_FLOOR <= float(lines[0].split("\t")[0]) <= 1.0


def test_real_use_recall_score_reads_the_same_for_one_candidate_as_for_many(cli):
    cli("remember", "I prefer aisle seats on long flights")
    alone = cli("recall", "where do I like to sit on a plane").out.rstrip("\n").split("\t")
    assert float(alone[0]) > 0.5  # not a z-score over one candidate (that was 0.0000)
    chatter = [f"note {n}: the quarterly report section {n} needs a review" for n in range(60)]
    assert cli("remember", "--lines", input="\n".join(chatter)).code == 0
    crowd = cli("recall", "where do I like to sit on a plane").out.splitlines()
    assert len(crowd) == 1 and crowd[0].split("\t")[1:] == alone[1:]
    assert abs(float(crowd[0].split("\t")[0]) - float(alone[0])) < 1e-3


def test_real_use_recall_floor_is_configurable(facts, monkeypatch):
    assert len(facts("recall", "where do I like to sit on a plane", "--floor", "0").out
               .splitlines()) == len(FACTS)
    monkeypatch.setenv("MEMOS_RECALL_FLOOR", "0.99")
    assert facts("recall", "where do I like to sit on a plane").code == 3
    monkeypatch.delenv("MEMOS_RECALL_FLOOR")
    assert facts("config", "set", "recall.floor", "0").code == 0
    assert len(facts("recall", "aisle").out.splitlines()) == len(FACTS)


def test_real_use_forget_query_takes_only_what_clears_the_floor(facts):
    nothing = facts("forget", "--query", "zzqqxx nonexistent gibberish", "--yes")
    assert nothing.code == 0 and nothing.out == "" and "nothing matches" in nothing.err
    dry = facts("forget", "--query", "where do I like to sit on a plane", "--dry-run")
    assert dry.code == 0 and len(dry.out.splitlines()) == 1 and "aisle seats" in dry.out
    gone = facts("forget", "--query", "where do I like to sit on a plane", "--yes")
    assert gone.code == 0 and "forgot 1 memory(ies)" in gone.err
    assert len(facts("list").out.splitlines()) == len(FACTS) - 1
