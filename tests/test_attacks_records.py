"""Issue 10, attacks on records: hostile import lines, damaged and tampered rows, bad bytes.

Each test reproduces one attack from the issue (``test_attack_NN_*``, NN the item number).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from memos_cli.engine import consolidation

from memos_cli.core import crypto
from memos_cli.engine import MemoryEngine, NewMemory
from memos_cli.core.lifecycle import Action, Plan
from memos_cli.core.memory import payload_from_memory


def _import_file(tmp_path, lines: list[dict]) -> str:
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return str(path)


def _good(n: int) -> dict:
    return {"id": f"{n:016x}", "text": f"imported memory number {n}",
            "created_at": "2024-01-02T03:04:05Z", "updated_at": "2024-01-02T03:04:05Z"}


@pytest.mark.parametrize("field, value", [
    ("access_count", "many"), ("access_count", -1), ("access_count", True),
    ("created_at", "the day before yesterday"), ("updated_at", 20240102),
    ("occurred_at", "2024-13-45"), ("last_access", []), ("importance", "high"),
    ("importance", True), ("tags", "a,b"), ("derived_from", ["not an id"]),
    ("source_ref", 7), ("history", [{"text": "old"}]), ("history", "none"),
])
def test_attack_04_bad_import_field_type(cli, tmp_path, field, value):
    hostile = dict(_good(2), **{field: value})
    result = cli("import", _import_file(tmp_path, [_good(1), hostile, _good(3)]))
    assert result.code == 8
    assert "line 2" in result.err and field in result.err
    assert "__init__" not in result.err and "Traceback" not in result.err
    assert cli("list").out == ""  # nothing imported: all or nothing


def test_attack_04_missing_field_is_named(cli, tmp_path):
    line = {"id": "00000000000000ab"}  # no text
    result = cli("import", _import_file(tmp_path, [_good(1), line]))
    assert result.code == 8 and "line 2" in result.err and "missing field(s): text" in result.err
    assert "positional argument" not in result.err


def _reseal(eng: MemoryEngine, memory_id: str, change) -> None:
    """What an older memos (or a hostile import it let through) left: a sealed, authentic
    record whose fields are invalid."""
    with eng.unit(write=False) as work:  # unlock and open
        row = eng.store.get([memory_id])[0]
        payload = payload_from_memory(work.codec.open(row))
    change(payload["m"])
    key = eng.unlock().current.key
    blob = crypto.seal(key, json.dumps(payload).encode(), memory_id)
    eng.store.update([memory_id], [{"c": crypto.b64e(blob)}])


def test_attack_04_one_bad_record_never_stops_the_others(cli):
    ids = [cli("remember", text).out.strip() for text in
           ("the boat is moored at pier 7", "the spare key is under the mat", "bins go out on Monday")]
    _reseal(MemoryEngine(), ids[1], lambda m: m.update(access_count="many", created_at="soon"))
    listed = cli("list")
    assert listed.code == 5 and ids[1][:8] in listed.err
    assert {line.split("\t")[0] for line in listed.out.splitlines()} == {ids[0], ids[2]}
    recalled = cli("recall", "where is the boat moored")
    assert recalled.code == 5 and "pier 7" in recalled.out
    assert cli("stats").code == 5 and cli("export").code == 5
    assert cli("forget", "--all", "--yes").code == 0
    assert cli("list").code == 0


def test_attack_12_forgetting_a_merged_memory_takes_its_tag_away(engine_factory):
    eng = engine_factory()
    survivor = eng.remember(NewMemory("my sister Ana lives in Lisbon", tags=["family"])).memory
    merged = eng.remember(NewMemory("my sister Ana lives in Lisbon now", tags=["ana"])).memory
    shared = eng.remember(NewMemory("Ana's flat is in Lisbon", tags=["family", "lisbon"])).memory
    plan = Plan([Action("merge", [merged.id, shared.id], "near-duplicates", into=survivor.id)])
    consolidation.apply(eng, plan)
    assert eng.show(survivor.id).tags == ["family", "ana", "lisbon"]
    eng.forget([merged.id])
    assert eng.show(survivor.id).tags == ["family", "lisbon"]  # "family" was its own
    eng.forget([shared.id])
    assert eng.show(survivor.id).tags == ["family"]


def test_attack_15_a_damaged_record_can_be_forgotten(cli):
    keep = cli("remember", "the boat is moored at pier 7").out.strip()
    bad = cli("remember", "the spare key is under the mat").out.strip()
    eng = MemoryEngine()
    eng.all_memories()
    row = eng.store.get([bad])[0]
    blob = bytearray(crypto.b64d(row.meta["c"]))
    blob[-1] ^= 1  # one flipped bit in the ciphertext
    eng.store.update([bad], [{"c": crypto.b64e(bytes(blob))}])
    assert cli("list").code == 5
    dry = cli("forget", bad, "--dry-run")
    assert dry.code == 0 and "damaged" in dry.err and "1 memory(ies) would be forgotten" in dry.err
    forgot = cli("forget", bad, "--yes")
    assert forgot.code == 0 and forgot.out.strip() == bad
    listed = cli("list")
    assert listed.code == 0 and listed.out.split("\t")[0] == keep


def test_a_forgotten_damaged_memory_leaves_the_engines_damage_list(cli):
    bad = cli("remember", "the spare key is under the mat").out.strip()
    eng = MemoryEngine()
    row = eng.store.get([bad])[0]
    blob = bytearray(crypto.b64d(row.meta["c"]))
    blob[-1] ^= 1
    eng.store.update([bad], [{"c": crypto.b64e(bytes(blob))}])
    eng.list()
    assert eng.damaged == [bad]
    eng.forget([bad])
    assert eng.damaged == []


@pytest.mark.parametrize("warm", [False, True], ids=["asks Chroma", "list index in memory"])
def test_attack_16_a_copied_digest_does_not_pass_for_a_duplicate(engine_factory, warm):
    """A new process looks the digest up in Chroma, finds the altered row and reports it
    damaged; a long-lived one (the agent) looks it up in its list index, where the tags
    come from opened texts: either way the new text is stored, and the altered row is
    damage at its next read."""
    eng = engine_factory()
    other = eng.remember(NewMemory("the boat is moored at pier 7")).memory
    gone = eng.remember(NewMemory("the alarm code is 4471")).memory
    digest = eng.store.get([gone.id])[0].meta["h"]  # seen by an attacker before the forget
    eng.forget([gone.id])
    eng.store.update([other.id], [{"h": digest}])  # behind memos' back: no new generation
    writer = eng if warm else engine_factory()
    if warm:
        writer.keep_warm()
        generation = (writer.paths.data_dir / "store.gen").read_text()
        assert writer.listing.tagged(generation) is not None
    again = writer.remember(NewMemory("the alarm code is 4471"))
    assert again.created and again.memory.id != other.id
    assert (other.id in writer.damaged) is not warm  # (warm: the row was not read)
    reader = engine_factory()
    assert [m.text for m in reader.list()] == ["the alarm code is 4471"]
    assert other.id in reader.damaged


def test_attack_16_swapped_vectors_are_detected(engine_factory):
    eng = engine_factory()
    boat = eng.remember(NewMemory("the boat is moored at pier 7")).memory
    key = eng.remember(NewMemory("the spare key is under the mat")).memory
    rows = {r.id: r for r in eng.store.get([boat.id, key.id], with_vectors=True)}
    swapped = np.vstack([rows[key.id].vector, rows[boat.id].vector]).astype(np.float32)
    eng.store.collection.update(ids=[boat.id, key.id], embeddings=swapped)
    fresh = engine_factory()
    assert fresh.recall("where is the spare key", 2, floor=0.0) == []  # never the wrong one
    assert sorted(fresh.damaged) == sorted([boat.id, key.id])
    assert [m.id for m in fresh.list()] == [key.id, boat.id]  # the records themselves are fine


def _run(args: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess:
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "memos_cli", *args], input=stdin,
                          capture_output=True, env=env, timeout=120, check=False)


def test_attack_22_invalid_utf8_on_stdin_is_bad_input(home):
    for args in (["remember"], ["remember", "-"], ["import", "-"]):
        result = _run(args, b"caf\xe9 au lait\n")
        assert result.returncode == 8, args
        assert b"stdin is not valid UTF-8" in result.stderr and b"TypeError" not in result.stderr


def test_attack_22_invalid_utf8_in_an_argument_is_a_usage_error(home):
    for args in ([b"remember", b"caf\xe9"], [b"recall", b"\xff\xfe"], [b"list", b"--tag", b"\xff"]):
        result = subprocess.run([sys.executable.encode(), b"-m", b"memos_cli", *args],
                                capture_output=True, env=dict(os.environ), timeout=120,
                                check=False)
        assert result.returncode == 2, args
        assert b"is not valid UTF-8" in result.stderr and b"TypeError" not in result.stderr
    assert _run(["list"]).stdout == b""  # nothing was stored
