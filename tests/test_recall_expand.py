"""Recall's optional model step (`recall --expand`): a chat model words what an answer may
say, recall searches with it too. Against a real OpenAI-protocol server on 127.0.0.1, with
the real embedding model; the library part with the test embedder."""

from __future__ import annotations

import json

import pytest

from memos_cli.assistant.expansion import MAX_CHARS, MAX_LINES, lines_of

NOTES = [
    "The spare bike key is in the blue jar on the shelf",
    "Where did I put the receipt for the new laptop?",
    "I put the winter tyres in the garage in October",
    "Ana put her passport in the top drawer of the desk",
    "I left my reading glasses at the office",
]
VAGUE = "where did I put it"
WORDING = '{"lines": ["spare bike key", "bike key kept in a jar"]}'


@pytest.fixture
def notes(cli):
    assert cli("remember", "--lines", input="\n".join(NOTES)).code == 0
    return cli


def _texts(result) -> list[str]:
    return [m["text"] for m in json.loads(result.out)]


def test_the_models_wording_reorders_what_recall_finds(notes, server):
    plain = _texts(notes("recall", VAGUE, "--floor", "0", "--json"))
    assert plain[0] != NOTES[0]  # the question alone does not point at the key
    server.extractions = [WORDING]
    expanded = notes("recall", VAGUE, "--floor", "0", "--json", "--expand")
    assert expanded.code == 0 and _texts(expanded)[0] == NOTES[0]
    assert sorted(_texts(expanded)) == sorted(plain)  # reordered, nothing invented


def test_only_the_question_goes_to_the_model(notes, server):
    server.extractions = [WORDING]
    notes("recall", VAGUE, "--expand")
    (request,) = server.requests
    sent = json.dumps(request)
    assert json.dumps(VAGUE)[1:-1] in sent and request["response_format"] == {"type": "json_object"}
    assert not any(word in sent for word in ("jar", "tyres", "passport", "glasses", "receipt"))


def test_a_wording_never_makes_a_memory_relevant(notes, server):
    """Relevance (the floor) is the question's own evidence: a model's guess that matches
    a note word for word does not make it clear the floor for an unrelated question."""
    server.extractions = ['{"lines": ["The spare bike key is in the blue jar on the shelf"]}']
    result = notes("recall", "how do volcanoes form", "--expand", "--json")
    assert result.code == 3 and json.loads(result.out) == []


def test_config_turns_it_on_and_the_flag_off(notes, server):
    assert notes("config", "set", "recall.expand", "true").code == 0
    server.extractions = [WORDING]
    assert _texts(notes("recall", VAGUE, "--floor", "0", "--json"))[0] == NOTES[0]
    assert len(server.requests) == 1
    notes("recall", VAGUE, "--no-expand")
    assert len(server.requests) == 1


@pytest.mark.parametrize("reply", ["not json at all", '{"lines": "one string"}', '{"lines": [1, 2]}',
                                   '["a list"]', '{"other": ["x"]}'])
def test_an_unreadable_reply_recalls_with_the_question_alone(notes, server, reply):
    server.extractions = [reply]
    expanded = notes("recall", VAGUE, "--floor", "0", "--json", "--expand")
    assert expanded.code == 0 and "no usable wording" in expanded.err
    assert _texts(expanded) == _texts(notes("recall", VAGUE, "--floor", "0", "--json"))


def test_a_failing_model_is_one_line_exit_6(notes, server):
    server.failures = [{"status": 500}] * 3  # the client retries server errors; all fail
    result = notes("recall", VAGUE, "--expand")
    assert result.code == 6 and result.out == "" and len(result.err.strip().splitlines()) == 1


def test_without_a_model_expand_is_a_usage_error(notes):
    result = notes("recall", VAGUE, "--expand")
    assert result.code == 2 and "needs a chat model" in result.err


def test_expand_through_a_real_process(cli, cli_proc, server):
    cli("remember", "--lines", input="\n".join(NOTES))
    server.extractions = [WORDING]
    result = cli_proc("recall", VAGUE, "--floor", "0", "--expand", "--json")
    assert result.code == 0 and _texts(result)[0] == NOTES[0]


def test_the_library_searches_with_other_wordings(engine_factory):
    from memos_cli.engine import NewMemory

    engine = engine_factory()
    engine.remember_many([NewMemory(t) for t in ("alpha beta gamma", "delta epsilon zeta",
                                                 "eta theta iota")])
    plain = engine.recall("kappa lambda", 3, floor=0.0)
    also = engine.recall("kappa lambda", 3, floor=0.0, also=["theta iota"])
    assert also[0].memory.text == "eta theta iota"
    # the score shown is the question's own evidence, the same with or without wordings
    assert {h.memory.id: h.score for h in also} == {h.memory.id: h.score for h in plain}


@pytest.mark.parametrize("reply, lines", [
    ('{"lines": ["a", " b ", "", "c", "d"]}', ["a", "b", "c"][:MAX_LINES]),
    ('{"lines": ["' + "x" * 500 + '"]}', ["x" * MAX_CHARS]),
    ('{"lines": [null, {"a": 1}, "ok"]}', ["ok"]),
    ("[]", []), ("", []), ('{"lines": null}', []),
])
def test_lines_of_a_reply(reply, lines):
    assert lines_of(reply) == lines


@pytest.mark.parametrize("reply, strings", [
    ('{"facts": ["a", 2, "b"]}', ["a", "b"]),
    ('{"facts": "one string"}', []), ('{"facts": {"a": 1}}', []), ('["a"]', []), ("not json", []),
])
def test_a_replys_listed_strings_or_none(reply, strings):
    """One reader for every model reply that lists strings (expansion lines, summary facts):
    anything but a list under the key is unreadable, and skipped whole."""
    from memos_cli.assistant.llm import listed_strings

    assert listed_strings(reply, "facts") == strings
