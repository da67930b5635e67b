"""``memos import --from chatgpt|claude|markdown``: sample exports in each published shape."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from memos_cli.core.errors import BadInputError
from memos_cli.frontends.importers import parse, store

T0 = 1700000000.0  # 2023-11-14T22:13:20Z


def chatgpt_conversation(conv_id: str = "c1") -> dict:
    """A ChatGPT export conversation: a mapping tree whose first user message was edited,
    so it has two branches; ``current_node`` ends the branch the user kept."""
    def node(node_id, parent, children, role=None, text=None, t=None, **extra):
        message = None
        if role is not None:
            message = {"id": node_id, "author": {"role": role, "name": None, "metadata": {}},
                       "create_time": t, "content": {"content_type": "text", "parts": [text]},
                       "status": "finished_successfully", "metadata": extra}
        return {"id": node_id, "message": message, "parent": parent, "children": children}

    mapping = {
        "root": node("root", None, ["sys"]),
        "sys": node("sys", "root", ["u-old", "u1"], "system", "You are ChatGPT.", T0,
                    is_visually_hidden_from_conversation=True),
        "u-old": node("u-old", "sys", ["a-old"], "user", "I live in Paris", T0 + 1),
        "a-old": node("a-old", "u-old", [], "assistant", "Paris is lovely.", T0 + 2),
        "u1": node("u1", "sys", ["a1"], "user", "I live in Lisbon and I have a dog named Bolt",
                   T0 + 3),
        "a1": node("a1", "u1", ["u2"], "assistant", "Lisbon is sunny. Bolt is a fine name.",
                   T0 + 4),
        "u2": node("u2", "a1", ["a2"], "user", "What should I cook tonight?", T0 + 5),
        "a2": node("a2", "u2", [], "assistant", "Try bacalhau.", T0 + 6),
    }
    return {"title": "Moving", "create_time": T0, "update_time": T0 + 6, "mapping": mapping,
            "current_node": "a2", "conversation_id": conv_id, "id": conv_id}


def claude_conversations() -> list:
    return [{"uuid": "k1", "name": "Garden", "created_at": "2024-05-01T09:00:00.000000Z",
             "updated_at": "2024-05-01T09:05:00.000000Z", "chat_messages": [
                 {"uuid": "m1", "text": "My tomatoes keep splitting", "sender": "human",
                  "created_at": "2024-05-01T09:00:00.000000Z",
                  "content": [{"type": "text", "text": "My tomatoes keep splitting"}]},
                 {"uuid": "m2", "text": "", "sender": "assistant",
                  "created_at": "2024-05-01T09:01:00.000000Z",
                  "content": [{"type": "text", "text": "Water them more evenly."}]}]}]


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), "utf-8")
    return path


def test_chatgpt_export_follows_the_kept_branch_and_states_facts(tmp_path):
    parsed = parse("chatgpt", write_json(tmp_path / "conversations.json", [chatgpt_conversation()]))
    texts = [i.text for i in parsed.items]
    assert texts == ["User: I live in Lisbon and I have a dog named Bolt\n"
                     "Assistant: Lisbon is sunny. Bolt is a fine name.",
                     "I live in Lisbon and I have a dog named Bolt",
                     "User: What should I cook tonight?\nAssistant: Try bacalhau."]
    assert [i.kind for i in parsed.items] == ["episode", "fact", "episode"]
    assert parsed.items[0].occurred_at.isoformat() == "2023-11-14T22:13:23+00:00"
    assert parsed.items[0].source_ref == "chatgpt:c1/u1"
    assert not any("Paris" in t for t in texts)  # the abandoned branch is not the conversation


def test_claude_export_uses_content_when_text_is_empty(tmp_path):
    parsed = parse("claude", write_json(tmp_path / "conversations.json", claude_conversations()))
    assert [i.text for i in parsed.items] == [
        "User: My tomatoes keep splitting\nAssistant: Water them more evenly.",
        "My tomatoes keep splitting"]
    assert parsed.items[0].occurred_at.isoformat() == "2024-05-01T09:00:00+00:00"
    assert parsed.items[0].source_ref == "claude:k1/m1"


def test_markdown_notes_by_paragraph_and_item_with_dates_and_tags(tmp_path):
    vault = tmp_path / "vault"
    (vault / "travel").mkdir(parents=True)
    (vault / ".obsidian").mkdir()
    (vault / ".obsidian" / "skip.md").write_text("settings, not notes")
    (vault / "travel" / "japan.md").write_text(
        "---\ntitle: Japan\ndate: 2024-03-02\ntags:\n  - trips\n  - asia\n---\n"
        "# Japan trip\n\nWe stayed in Kyoto for a week.\nThe ryokan was quiet.\n\n"
        "- Bought a knife in #osaka\n- [x] Sent postcards\n", "utf-8")
    plain = vault / "inbox.md"
    plain.write_text("Call the plumber about the leak.\n", "utf-8")
    os.utime(plain, (T0, T0))
    parsed = parse("markdown", vault)
    by_text = {i.text: i for i in parsed.items}
    assert list(by_text) == ["Call the plumber about the leak.",
                             "We stayed in Kyoto for a week.\nThe ryokan was quiet.",
                             "Bought a knife in #osaka", "Sent postcards"]
    assert by_text["Bought a knife in #osaka"].tags == ["trips", "asia", "travel", "osaka"]
    assert by_text["Sent postcards"].occurred_at.date().isoformat() == "2024-03-02"
    assert by_text["Call the plumber about the leak."].occurred_at.timestamp() == T0
    assert by_text["Sent postcards"].source_ref == "markdown:travel/japan.md"
    assert parsed.files == 2


@pytest.mark.parametrize("fmt, content, place", [
    ("chatgpt", '[{"mapping": {}, "current_node": "x"\n', "conversations.json line 2"),
    ("chatgpt", json.dumps([{"title": "no mapping", "current_node": "a"}]),
     "conversation #1: missing or invalid 'mapping'"),
    ("chatgpt", json.dumps([{"mapping": {"a": {"message": {"content": {}}, "parent": None}},
                             "current_node": "a"}]),
     "conversation #1, message a: missing or invalid 'author'"),
    ("claude", json.dumps([{"uuid": "k", "chat_messages": [{"text": "hi"}]}]),
     "conversation #1, message #1: missing or invalid 'sender'"),
    ("claude", json.dumps({"not": "a list"}), "expected a list of conversations"),
])
def test_broken_exports_name_the_file_and_place(tmp_path, fmt, content, place):
    path = tmp_path / "conversations.json"
    path.write_text(content, "utf-8")
    with pytest.raises(BadInputError, match=place):
        parse(fmt, path)


def test_a_zip_without_conversations_json_is_refused(tmp_path):
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("chat.html", "<html></html>")
    with pytest.raises(BadInputError, match="export.zip: no conversations.json in this zip"):
        parse("chatgpt", path)


def test_a_markdown_front_matter_date_that_is_not_a_date_is_refused(tmp_path):
    (tmp_path / "a.md").write_text("---\ntags: [x]\ndate: someday soon\n---\nText\n", "utf-8")
    with pytest.raises(BadInputError, match=r"a.md line 3: invalid date"):
        parse("markdown", tmp_path)


def test_store_skips_what_is_there_and_resumes_after_an_interruption(engine_factory, tmp_path):
    items = parse("chatgpt", write_json(tmp_path / "c.json",
                                        [chatgpt_conversation("c1"), chatgpt_conversation("c2")]
                                        )).items
    eng = engine_factory()
    calls = 0
    real = eng.remember_many

    def dies_on_second_batch(batch):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        return real(batch)

    eng.remember_many = dies_on_second_batch
    with pytest.raises(KeyboardInterrupt):
        store(eng, items, batch=2)
    eng.remember_many = real
    assert len(eng.list()) == 2  # the first batch was committed
    resumed = store(eng, items, batch=2)
    assert (resumed.added, resumed.skipped) == (1, 5)  # the two conversations share texts
    again = store(eng, items, batch=2)
    assert (again.added, again.skipped) == (0, 6)


# --- through the command ---------------------------------------------------------------------

def test_import_from_chatgpt_zip_round_trips_and_twice_adds_nothing(cli, tmp_path):
    path = tmp_path / "chatgpt-export.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("conversations.json", json.dumps([chatgpt_conversation()]))
        archive.writestr("chat.html", "<html></html>")
    dry = cli("import", "--from", "chatgpt", str(path), "--dry-run", "--json")
    assert dry.code == 0, dry.err
    assert json.loads(dry.out) == {"conversations": 1, "files": 1, "memories": 3, "episode": 2,
                                   "fact": 1}
    assert not (cli("list", "--json").out.strip("[]\n"))
    first = cli("import", "--from", "chatgpt", str(path), "--json")
    assert first.code == 0, first.err
    assert json.loads(first.out)["added"] == 3
    facts = json.loads(cli("list", "--kind", "fact", "--json").out)
    assert [(m["text"], m["source"], m["occurred_at"]) for m in facts] == [
        ("I live in Lisbon and I have a dog named Bolt", "import", "2023-11-14T22:13:23Z")]
    second = cli("import", "--from", "chatgpt", str(path), "--json")
    assert (json.loads(second.out)["added"], json.loads(second.out)["skipped"]) == (0, 3)


def test_import_from_claude_and_markdown_through_the_command(cli, tmp_path):
    write_json(tmp_path / "conversations.json", claude_conversations())
    done = cli("import", "--from", "claude", str(tmp_path / "conversations.json"))
    assert done.code == 0, done.err
    assert done.out.startswith("added 2, skipped 0")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("First thought.\n\nSecond thought #idea\n", "utf-8")
    done = cli("import", "--from", "markdown", str(notes), "--json")
    assert json.loads(done.out)["added"] == 2
    tagged = json.loads(cli("list", "--tag", "idea", "--json").out)
    assert [m["text"] for m in tagged] == ["Second thought #idea"]


def test_import_from_a_broken_export_exits_8_and_stores_nothing(cli, tmp_path):
    good = chatgpt_conversation()
    broken = chatgpt_conversation("c2")
    del broken["mapping"]["a1"]["message"]["author"]
    path = write_json(tmp_path / "conversations.json", [good, broken])
    done = cli("import", "--from", "chatgpt", str(path))
    assert done.code == 8
    assert "conversations.json: conversation #2, message a1: missing or invalid 'author'" in done.err
    assert json.loads(cli("list", "--json").out or "[]") == []


def test_import_from_an_unknown_format_is_a_usage_error(cli, tmp_path):
    done = cli("import", "--from", "evernote", str(tmp_path))
    assert done.code == 2 and "unknown import format 'evernote'" in done.err


def test_import_with_a_model_learns_facts_as_chat_does(cli, tmp_path, monkeypatch):
    from fake_openai import FakeOpenAI, ops

    fake = FakeOpenAI()
    monkeypatch.setenv("MEMOS_LLM_BASE_URL", fake.url)
    monkeypatch.setenv("MEMOS_LLM_MODEL", "tiny-chat")
    monkeypatch.setenv("MEMOS_LLM_API_KEY", "test-key")
    fake.extractions = [ops({"op": "ADD", "text": "The user lives in Lisbon", "kind": "fact"}),
                        ops({"op": "NONE"})]
    try:
        path = write_json(tmp_path / "conversations.json", [chatgpt_conversation()])
        done = cli("import", "--from", "chatgpt", str(path), "--json")
    finally:
        fake.close()
    assert done.code == 0, done.err
    assert json.loads(done.out)["learned"] == 1
    exchange = fake.requests[0]["messages"][1]["content"]
    assert "I live in Lisbon and I have a dog named Bolt" in exchange
    facts = json.loads(cli("list", "--kind", "fact", "--json").out)
    assert [m["text"] for m in facts] == ["The user lives in Lisbon"]  # not the offline rule's
