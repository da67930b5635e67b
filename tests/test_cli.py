"""The command line contract scripts rely on, in-process and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_remember_prints_the_id_and_recall_finds_it(cli):
    added = cli("remember", "My dentist is Dr. Rivera on Elm Street", "--kind", "fact",
                "--tag", "health")
    assert added.code == 0, added.err
    memory_id = added.out.strip()
    assert len(memory_id) == 16
    found = cli("recall", "who is my dentist", "--json")
    assert found.code == 0
    records = json.loads(found.out)
    assert records[0]["id"] == memory_id
    assert {"id", "text", "score", "similarity", "kind", "tags", "created_at"} <= set(records[0])
    assert records[0]["similarity"] > 0.3
    assert records[0]["tags"] == ["health"]


def test_plain_output_is_tab_separated_without_colour(cli):
    cli("remember", "tea with oat milk, no sugar", "--kind", "preference")
    cli("remember", "the car needs new tyres before winter")
    cli("remember", "Lena's flat is on the fourth floor")
    out = cli("recall", "how do I take my tea").out.splitlines()
    fields = out[0].split("\t")
    assert len(fields) == 6 and fields[2] == "preference"
    assert len(out) == 1  # the car and the flat are not relevant: not printed
    assert "\x1b[" not in cli("list").out


def test_same_text_twice_says_so(cli):
    first = cli("remember", "the spare key is under the plant pot")
    again = cli("remember", "the spare key is under the plant pot")
    assert again.code == 0 and again.out == first.out
    assert "already remembered" in again.err
    assert len(cli("list").out.splitlines()) == 1


def test_remember_from_stdin_and_lines(cli):
    assert cli("remember", "-", input="piped memory\n").code == 0
    many = cli("remember", "--lines", input="one thing\n\nanother thing\n")
    assert many.code == 0 and len(many.out.split()) == 2
    texts = {json.loads(cli("list", "--json").out)[n]["text"] for n in range(3)}
    assert texts == {"piped memory", "one thing", "another thing"}
    listed = json.loads(cli("list", "--json").out)
    assert {r["source"] for r in listed} == {"stdin"}


def test_show_update_history(cli):
    memory_id = cli("remember", "I live in Leeds").out.strip()
    assert cli("update", memory_id[:6], "I live in York").code == 0
    shown = json.loads(cli("show", memory_id[:6], "--json").out)
    assert shown["text"] == "I live in York"
    assert [v["text"] for v in shown["history"]] == ["I live in Leeds"]
    plain = cli("show", memory_id).out
    assert "history[1]" in plain and "I live in Leeds" in plain


def test_exit_codes(cli):
    assert cli("show", "deadbeefdead").code == 3
    assert cli("recall", "x", "--since", "next tuesday-ish").code == 2
    assert cli("no-such-command").code == 2
    assert cli("remember", "x", "--kind", "weird").code == 2
    assert cli("import", "/nonexistent/file.jsonl").code == 8


def test_forget_needs_yes_when_not_on_a_terminal(cli):
    memory_id = cli("remember", "forget me not").out.strip()
    refused = cli("forget", memory_id)
    assert refused.code == 2 and "--yes" in refused.err
    dry = cli("forget", "--query", "forget me", "--dry-run")
    assert dry.code == 0 and memory_id in dry.out
    assert len(cli("list").out.splitlines()) == 1
    done = cli("forget", memory_id, "--yes")
    assert done.code == 0 and done.out.strip() == memory_id
    assert cli("list").out == ""


def test_forget_by_tag_before_and_all(cli, home):
    cli("remember", "work thing", "--tag", "work")
    cli("remember", "home thing", "--tag", "home")
    assert cli("forget", "--tag", "work", "--yes").code == 0
    assert [json.loads(cli("list", "--json").out)[0]["text"]] == ["home thing"]
    assert cli("forget", "--before", "2000-01-01", "--yes").out == ""
    gone = cli("forget", "--all", "--yes", "--json")
    assert json.loads(gone.out)["count"] == 1
    assert not (home / "config/keys/default.json").exists()


def test_export_import_round_trip_through_the_cli(cli, tmp_path, monkeypatch):
    cli("remember", "first memory", "--tag", "a")
    cli("remember", "second memory", "--kind", "fact", "--at", "2024-05-01")
    exported = cli("export")
    assert exported.code == 0 and "plaintext" in exported.err
    path = tmp_path / "export.jsonl"
    path.write_text(exported.out)
    monkeypatch.setenv("MEMOS_HOME", str(tmp_path / "second-home"))
    imported = cli("import", str(path), "--json")
    assert json.loads(imported.out) == {"added": 2, "skipped": 0}
    assert cli("export").out == exported.out
    assert json.loads(cli("import", str(path), "--json").out) == {"added": 0, "skipped": 2}


def test_malformed_import_line_3_of_10(cli, tmp_path):
    lines = [json.dumps({"id": f"{n:016x}", "text": f"memory {n}"}) for n in range(10)]
    lines[2] = "{not json"
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines))
    result = cli("import", str(path))
    assert result.code == 8 and "line 3" in result.err
    assert cli("list").out == ""


def test_stats_and_key_status(cli):
    cli("remember", "a fact", "--kind", "fact")
    stats = json.loads(cli("stats", "--json").out)
    assert stats["memories"] == 1 and stats["by_kind"] == {"fact": 1}
    assert stats["key_mode"] == "keyfile" and stats["embedding_model"]
    assert stats["bytes_on_disk"] > 0
    status = json.loads(cli("key", "status", "--json").out)
    assert status["mode"] == "keyfile"


def test_profiles_flag_and_env(cli, monkeypatch):
    cli("--profile", "work", "remember", "quarterly review on Monday")
    assert cli("list").out == ""
    monkeypatch.setenv("MEMOS_PROFILE", "work")
    assert "quarterly review" in cli("list").out
    assert cli("--profile", "Bad Name!", "list").code == 2


def test_version_and_help(cli):
    from memos_cli import __version__

    assert cli("--version").out.strip() == f"memos {__version__}"
    assert "remember" in cli("--help").out


def test_subprocess_round_trip_and_wrong_passphrase(cli_proc, home):
    env = {"MEMOS_PASSPHRASE": "hunter2"}
    added = cli_proc("remember", "my locker code is 4711", env=env)
    assert added.code == 0, added.err
    found = cli_proc("recall", "locker code", "--json", env=env)
    assert json.loads(found.out)[0]["text"] == "my locker code is 4711"
    data = home / "data"
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in data.rglob("*") if p.is_file()}
    wrong = cli_proc("recall", "locker", env={"MEMOS_PASSPHRASE": "wrong"})
    assert wrong.code == 4 and "passphrase" in wrong.err and wrong.out == ""
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in data.rglob("*") if p.is_file()}
    assert before == after


def test_subprocess_tampered_record_exit_5_others_still_read(cli_proc, home):
    import sqlite3

    ids = [cli_proc("remember", text).out.strip() for text in ("alpha memory", "beta memory")]
    db = sqlite3.connect(home / "data/chroma/chroma.sqlite3")
    value, row = db.execute("SELECT string_value, rowid FROM embedding_metadata "
                            "WHERE key='c' LIMIT 1").fetchone()
    flipped = value[:20] + ("A" if value[20] != "A" else "B") + value[21:]
    db.execute("UPDATE embedding_metadata SET string_value=? WHERE rowid=?", (flipped, row))
    db.commit()
    db.close()
    listed = cli_proc("list", "--json")
    assert listed.code == 5 and "integrity" in listed.err
    assert len(json.loads(listed.out)) == 1
    codes = sorted(cli_proc("show", i).code for i in ids)
    assert codes == [0, 5]


def test_ctrl_c_exits_130(cli, monkeypatch):
    import memos_cli.engine as engine_module

    def interrupted(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine_module.MemoryEngine, "list", interrupted)
    result = cli("list")
    assert result.code == 130 and result.err.strip() == "memos: interrupted"


def test_debug_shows_a_traceback(cli):
    assert "Traceback" not in cli("show", "abcdabcd").err
    assert "Traceback" in cli("--debug", "show", "abcdabcd").err


def test_four_processes_remembering_at_once_lose_nothing(home):
    script = ("import sys\nfrom memos_cli.engine import MemoryEngine, NewMemory\n"
              "e = MemoryEngine()\n"
              "for n in range(12):\n"
              "    e.remember(NewMemory(f'process {sys.argv[1]} memory {n}'))\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(p)]) for p in range(4)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    from memos_cli.engine import MemoryEngine

    texts = [m.text for m in MemoryEngine().list()]
    assert len(texts) == 48 and len(set(texts)) == 48


def test_busy_store_exits_7(cli_proc, home, monkeypatch):
    import fcntl

    cli_proc("remember", "something")
    with open(home / "data/store.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        result = cli_proc("list", env={"MEMOS_LOCK_TIMEOUT": "0.3"})
    assert result.code == 7 and "busy" in result.err


@pytest.mark.parametrize("args, code", [(["list"], 0), (["recall", "x"], 3), (["stats"], 0)])
def test_read_commands_on_an_empty_home(cli, args, code, home):
    assert cli(*args).code == code  # recall: 3, nothing found
    assert not (home / "config" / "keys").exists()


# --- #9 §7: Unix manners and messages ----------------------------------------------------


@pytest.mark.parametrize("args", [["list"], ["list", "--json"], ["export"], ["recall", "memory"],
                                  ["stats"], ["audit"], ["show", "PREFIX"], ["config", "show"],
                                  ["--help"], ["recall", "--help"]])
def test_real_use_closed_pipe_is_not_an_error(cli_proc, args):
    cli_proc("remember", "--lines", input="\n".join(f"memory number {n}" for n in range(300)))
    if "PREFIX" in args:
        args = ["show", cli_proc("list").out.split("\t")[0]]
    # The reader is gone before memos writes a byte: every write meets a closed pipe.
    proc = subprocess.Popen([sys.executable, "-m", "memos_cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert "Traceback" not in err and "Broken pipe" not in err and "Errno" not in err


def test_real_use_import_error_names_the_missing_field_and_line(cli, tmp_path):
    path = tmp_path / "hand-written.jsonl"
    path.write_text('{"id": "00000000000000aa", "text": "fine"}\n{"id": "00000000000000ab"}\n')
    result = cli("import", str(path))
    assert result.code == 8
    assert result.err.strip() == "memos: line 2: missing field(s): text"


def test_real_use_config_show_says_where_each_setting_comes_from(cli, home, monkeypatch):
    assert cli("config", "set", "llm.model", "llama3.2").code == 0
    monkeypatch.setenv("MEMOS_EMBED_BASE_URL", "http://127.0.0.1:9/v1")
    rows = {line.split("\t")[0]: line.split("\t")[1:]
            for line in cli("--store", "http://127.0.0.1:8000", "config", "show").out.splitlines()}
    assert rows["file"] == [str(home / "config" / "config.toml"), "present"]
    assert rows["llm.model"] == ["llama3.2", "file"]
    assert rows["embedding.base_url"] == ["http://127.0.0.1:9/v1", "environment"]
    assert rows["embedding.model"] == ["local", "default"]
    assert rows["store.url"] == ["http://127.0.0.1:8000", "flag"]
    assert rows["recall.floor"][1] == "default" and rows["profile"] == ["default", "default"]
    shown = json.loads(cli("config", "show", "--json").out)
    assert shown["file"] == str(home / "config" / "config.toml")
    assert {"name": "llm.model", "value": "llama3.2", "source": "file"} in shown["settings"]


def test_real_use_config_show_on_a_fresh_home_prints_the_defaults(cli, home):
    result = cli("config", "show")
    assert result.code == 0 and "embedding.model\tlocal\tdefault" in result.out
    assert f"file\t{home / 'config' / 'config.toml'}\tabsent" in result.out


def test_real_use_list_has_since_and_until(cli):
    cli("remember", "long ago", "--at", "2020-01-01")
    cli("remember", "last year", "--at", "2025-06-01")
    cli("remember", "today")

    def texts(*flags: str) -> list[str]:
        return [line.split("\t")[-1] for line in cli("list", *flags).out.splitlines()]

    assert texts("--since", "2025-01-01") == ["today", "last year"]
    assert texts("--until", "2021-01-01") == ["long ago"]
    assert texts("--since", "2024-01-01", "--until", "2025-12-31") == ["last year"]


HELP_COMMANDS = [[], ["remember"], ["recall"], ["list"], ["forget"], ["ask"], ["chat"],
                 ["config", "show"], ["config", "set"], ["key"], ["import"], ["update"]]


@pytest.mark.parametrize("command", HELP_COMMANDS)
def test_real_use_help_is_plain_text_without_type_markers(cli, command):
    text = cli(*command, "--help").out
    usage = text.splitlines()[0]
    assert usage.startswith("Usage: memos") and "{" not in usage
    for marker in ("<bool>", "<str>", "<int", "<float", "╭", "│", "\x1b["):
        assert marker not in text, marker


@pytest.mark.parametrize("command", ["remember", "recall", "forget", "ask", "chat"])
def test_real_use_help_has_examples(cli, command):
    text = cli(command, "--help").out
    assert "Examples:" in text and f"memos {command} " in text.split("Examples:")[1]


def test_a_process_ends_with_its_output_flushed_and_its_exit_code(cli, cli_proc, home):
    """`run` ends the process without the interpreter's teardown (os._exit): what was
    printed must all arrive (to a file: block-buffered), with the command's exit code,
    and a model still loading in the background (a recall of an empty store) is waited
    for, not cut off."""
    texts = [f"memory number {n} with a tail to fill more than one buffer" for n in range(400)]
    cli("remember", "--lines", input="\n".join(texts))  # (every cli_proc test reads a pipe)
    empty = cli_proc("recall", "anything at all", env={"MEMOS_PROFILE": "empty"})
    assert empty.code == 3 and empty.err.strip().endswith("nothing relevant found")
    assert "Fatal" not in empty.err and "Traceback" not in empty.err
    out_file = home / "listed.txt"
    with open(out_file, "w") as fh:
        done = subprocess.run([sys.executable, "-m", "memos_cli", "list", "--json"], stdout=fh,
                              stderr=subprocess.PIPE, timeout=120)
    assert done.returncode == 0 and len(json.loads(out_file.read_text())) == 400
    assert out_file.read_text() == cli("list", "--json").out
