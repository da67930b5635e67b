"""Attacks on keys and secrets (issue 10 items 2, 9, 13, 17, 18, 24) and the key problems
of real use (issue 9 §3): kills at every step of rotation and passphrase change, lost,
corrupted and flipped key files, a tampered audit trail, the config writer."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from memos_cli.core import crypto
from memos_cli.core.audit import Event
from memos_cli.engine import MemoryEngine, NewMemory
from memos_cli.core.errors import IntegrityError, VersionError, WrongKeyError
from memos_cli.core.failpoint import EXIT_CODE, FAILPOINT_ENV

TEXTS = ("the boiler code is 4471", "the spare key is under the blue pot", "call Ana on Friday")
KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from conftest import HashEmbedder
from memos_cli.engine import MemoryEngine
eng = MemoryEngine(embedder=HashEmbedder())
eng.{call}
"""


def _kill_at(point: str, call: str, env: dict | None = None) -> None:
    """Run ``eng.<call>`` in a child process that dies at failpoint ``point``."""
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), call=call)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, **(env or {}), FAILPOINT_ENV: point}, timeout=300)
    assert done.returncode == EXIT_CODE, done.stderr


def _populate(engine_factory) -> tuple[list[str], list[tuple[str, str]]]:
    """Memories, a secret, recorded uses and audit events; returns (ids, audit events)."""
    eng = engine_factory()
    ids = [r.memory.id for r in eng.remember_many([NewMemory(t) for t in TEXTS])]
    eng.set_secret("llm.api_key", "sk-secret-value")
    eng.recall("boiler code", 2)
    eng.update(ids[2], "call Ana on Saturday")
    return ids, [(e.action, ",".join(e.ids)) for e in eng.audit()]


def _everything_readable(engine_factory, ids: list[str], events: list[tuple[str, str]]) -> None:
    fresh = engine_factory()
    assert fresh.secret("llm.api_key") == "sk-secret-value"  # before any resume, too
    assert sorted(m.id for m in fresh.list()) == sorted(ids)
    assert fresh.damaged == []
    assert engine_factory().secret("llm.api_key") == "sk-secret-value"
    trail = fresh.audit()
    assert fresh.audit_log.damaged == 0
    assert [(e.action, ",".join(e.ids)) for e in trail][:len(events)] == events
    assert fresh.usage.load(fresh.unlock())  # the recorded recalls survived
    assert not engine_factory().keys.status()["rotation_pending"]


ROTATION_STEPS = ["rotate:begun", "rotate:row-done", "rotate:rows-done", "reseal:index",
                  "reseal:audit", "reseal:vault", "rotate:before-finish", "rotate:finished"]


@pytest.mark.parametrize("point", ROTATION_STEPS)
def test_real_use_kill_at_every_step_of_rotation_keeps_everything_readable(engine_factory,
                                                                           point):
    ids, events = _populate(engine_factory)
    _kill_at(point, "rotate_key()")
    _everything_readable(engine_factory, ids, events)


def test_attack_09_kill_right_after_the_old_key_is_dropped(engine_factory, home):
    ids, events = _populate(engine_factory)
    old_id = engine_factory().keys.status()["key_id"]
    _kill_at("rotate:finished", "rotate_key()")
    doc = json.loads((home / "config/keys/default.json").read_text())
    assert doc["key_id"] != old_id and "next" not in doc  # the old key is gone from disk
    _everything_readable(engine_factory, ids, events)
    tags = {json.loads(p.read_bytes().split(b"\n")[0])["key_id"]
            for p in (home / "config/keys/default.vault", home / "data/default.usage")}
    assert tags == {doc["key_id"]}


@pytest.mark.parametrize("point", ["passphrase:proven", "passphrase:written"])
@pytest.mark.parametrize("start", ["keyfile", "passphrase"])
def test_real_use_kill_during_passphrase_change_keeps_everything_readable(
        engine_factory, monkeypatch, point, start):
    if start == "passphrase":
        monkeypatch.setenv("MEMOS_PASSPHRASE", "old words")
    ids, events = _populate(engine_factory)
    _kill_at(point, "change_passphrase('new words')")
    now = "new words" if point == "passphrase:written" else (
        "old words" if start == "passphrase" else None)
    if now is None:
        monkeypatch.delenv("MEMOS_PASSPHRASE", raising=False)
    else:
        monkeypatch.setenv("MEMOS_PASSPHRASE", now)
    _everything_readable(engine_factory, ids, events)
    # The old key-file secret wraps nothing any more once the new wrap is in place.
    secret = engine_factory().paths.secret_file("default")
    assert secret.exists() == (start == "keyfile" and point == "passphrase:proven")


# --- a lost key file (item 2) ------------------------------------------------------------------


def test_attack_02_deleted_key_file_is_an_error_never_a_new_key(cli, home, monkeypatch):
    monkeypatch.setenv("MEMOS_NEW_PASSPHRASE", "new words")
    assert cli("remember", "the boiler code is 4471").code == 0
    key_file, secret = home / "config/keys/default.json", home / "config/keys/default.secret"
    saved, secret_before = key_file.read_bytes(), secret.read_bytes()
    key_file.unlink()
    for args in (("list",), ("remember", "b"), ("recall", "boiler"), ("key", "rotate"),
                 ("reindex",), ("key", "passphrase")):
        result = cli(*args)
        assert result.code == 4, (args, result.err)
        assert "key file" in result.err and "missing" in result.err
        assert len(result.err.strip().splitlines()) == 1
    assert not key_file.exists() and secret.read_bytes() == secret_before
    key_file.write_bytes(saved)  # putting it back opens the store again
    assert "boiler code" in cli("list").out


def test_attack_02_a_secret_without_its_key_file_is_never_overwritten(engine_factory, home):
    engine_factory().set_secret("llm.api_key", "sk-1")  # a key, but no store yet
    secret = home / "config/keys/default.secret"
    before = secret.read_bytes()
    (home / "config/keys/default.json").unlink()
    with pytest.raises(WrongKeyError, match="missing"):
        engine_factory().remember(NewMemory("b"))
    assert secret.read_bytes() == before


# --- corrupted key and secret files (items 13 and 24) -------------------------------------------


def _flip(data: bytes, at: int | None = None) -> bytes:
    at = len(data) // 2 if at is None else at
    return data[:at] + bytes([data[at] ^ 0x04]) + data[at + 1:]


def _edit_json(field: str, value) -> callable:
    def edit(data: bytes) -> bytes:
        doc = json.loads(data)
        target = doc
        *path, last = field.split(".")
        for part in path:
            target = target[part]
        target[last] = value
        return json.dumps(doc).encode()
    return edit


KEY_FILE_DAMAGE = {
    "truncated": lambda d: d[: len(d) // 2],
    "not-json": lambda d: b"this is not json",
    "empty": lambda d: b"",
    "a-list": lambda d: b"[1, 2]",
    "flipped-wrap": lambda d: _edit_json("wrapped", base64.b64encode(
        _flip(base64.b64decode(json.loads(d)["wrapped"]))).decode())(d),
    "flipped-byte": lambda d: _flip(d, d.index(b'"wrapped"') + 20),
    "flipped-key-id": lambda d: _flip(d, d.index(b'"key_id"') + 12),
    "key-id-number": _edit_json("key_id", 7),
    "wrapped-number": _edit_json("wrapped", 12),
    "version-text": _edit_json("version", "one"),
    "mode-list": _edit_json("mode", ["keyfile"]),
    "next-text": _edit_json("next", "soon"),
    "wrapped-not-base64": _edit_json("wrapped", "@@@@"),
}
SECRET_DAMAGE = {
    "truncated": lambda d: d[: len(d) // 2],
    "not-json": lambda d: b"nope",
    "empty": lambda d: b"",
    "a-list": lambda d: b"[]",
    "kek-number": lambda d: b'{"kek": 5}',
    "kek-short": lambda d: b'{"kek": "AAAA"}',
    "kek-not-base64": lambda d: b'{"kek": "!!"}',
    "flipped-byte": lambda d: _flip(d, len(d) // 2),
}
KDF_DAMAGE = {
    "kdf-text": _edit_json("kdf", "argon2id"),
    "salt-number": _edit_json("kdf.salt", 3),
    "cost-text": _edit_json("kdf.memory_cost", "lots"),
    "cost-zero": _edit_json("kdf.memory_cost", 0),
    "kdf-unknown": _edit_json("kdf.name", "rot13"),
}


def _damaged_exit(cli, path: Path, damage) -> None:
    path.write_bytes(damage(path.read_bytes()))
    for args in (("list",), ("remember", "more")):
        result = cli(*args)
        assert result.code in (4, 5), (args, result.code, result.err)
        assert "unexpected" not in result.err and "Traceback" not in result.err
        assert len(result.err.strip().splitlines()) == 1, result.err


@pytest.mark.parametrize("name", sorted(KEY_FILE_DAMAGE))
def test_attack_13_corrupt_key_file_exits_4_or_5(cli, home, name):
    assert cli("remember", "the boiler code is 4471").code == 0
    _damaged_exit(cli, home / "config/keys/default.json", KEY_FILE_DAMAGE[name])


@pytest.mark.parametrize("name", sorted(SECRET_DAMAGE))
def test_attack_13_corrupt_secret_file_exits_4_or_5(cli, home, name):
    assert cli("remember", "the boiler code is 4471").code == 0
    _damaged_exit(cli, home / "config/keys/default.secret", SECRET_DAMAGE[name])


@pytest.mark.parametrize("name", sorted(KDF_DAMAGE))
def test_attack_13_corrupt_passphrase_parameters_exit_4_or_5(cli, home, monkeypatch, name):
    monkeypatch.setenv("MEMOS_PASSPHRASE", "correct horse")
    assert cli("remember", "the boiler code is 4471").code == 0
    _damaged_exit(cli, home / "config/keys/default.json", KDF_DAMAGE[name])


def test_attack_24_corrupt_keys_and_damaged_records_never_show_a_traceback(cli_proc, home,
                                                                           engine_factory):
    assert cli_proc("remember", "the boiler code is 4471").code == 0
    assert cli_proc("remember", "the spare key is under the blue pot").code == 0
    eng = MemoryEngine()
    with eng.unit(write=True):
        row = next(iter(eng.store.scan()))
        eng.store.update([row.id], [dict(row.meta, c=row.meta["c"][:-8] + "AAAAAAA=")])
    listed = cli_proc("list")  # the damaged one is reported (exit 5), the other listed
    assert listed.code == 5 and "Traceback" not in listed.err and len(listed.out.splitlines()) == 1
    forgot = cli_proc("forget", row.id[:8], "--yes")
    assert "Traceback" not in forgot.err
    key_file = home / "config/keys/default.json"
    for damage in (KEY_FILE_DAMAGE["a-list"], KEY_FILE_DAMAGE["wrapped-number"]):
        saved = key_file.read_bytes()
        key_file.write_bytes(damage(saved))
        result = cli_proc("list")
        assert result.code in (4, 5) and "Traceback" not in result.err, result.err
        key_file.write_bytes(saved)
    secret = home / "config/keys/default.secret"
    secret.write_bytes(b'{"kek": "AAAA"}')
    result = cli_proc("recall", "boiler")
    assert result.code in (4, 5) and "Traceback" not in result.err, result.err


# --- a flipped store check value (item 17) -------------------------------------------------------


def test_attack_17_flipped_check_value_is_an_integrity_error(cli):
    assert cli("remember", "the boiler code is 4471").code == 0
    eng = MemoryEngine()
    eng.list()
    meta = eng.store.meta()
    sealed = bytearray(base64.b64decode(meta["check"]))
    sealed[-3] ^= 0x01
    eng.store.set_meta(dict(meta, check=base64.b64encode(bytes(sealed)).decode()))
    result = cli("list")
    assert result.code == 5 and "check value" in result.err, result.err


# --- the chained audit trail (item 18) -----------------------------------------------------------


def _audit_lines(home: Path) -> list[bytes]:
    return (home / "data/default.audit").read_bytes().splitlines(keepends=True)


def _trail(cli) -> None:
    for text in TEXTS:
        assert cli("remember", text).code == 0
    assert cli("audit").code == 0


@pytest.mark.parametrize("attack", ["flip", "delete-middle", "delete-first", "swap"])
def test_attack_18_tampered_audit_trail_is_an_integrity_error(cli, home, attack):
    _trail(cli)
    lines = _audit_lines(home)
    assert len(lines) == 3
    if attack == "flip":
        lines[1] = lines[1][:30] + (b"A" if lines[1][30:31] != b"A" else b"B") + lines[1][31:]
    elif attack == "delete-middle":
        del lines[1]
    elif attack == "delete-first":
        del lines[0]
    else:
        lines[0], lines[1] = lines[1], lines[0]
    (home / "data/default.audit").write_bytes(b"".join(lines))
    result = cli("audit")
    assert result.code == 5 and "integrity" in result.err, result.err
    assert result.out or attack == "swap"  # the events that do open are still shown


def test_attack_18_forget_keeps_a_damaged_audit_line_rather_than_dropping_it(cli, home):
    _trail(cli)
    lines = _audit_lines(home)
    lines[0] = lines[0][:30] + (b"A" if lines[0][30:31] != b"A" else b"B") + lines[0][31:]
    (home / "data/default.audit").write_bytes(b"".join(lines))
    victim = cli("list", "--json")
    first = json.loads(victim.out)[0]["id"]
    assert cli("forget", first, "--yes").code == 0
    assert lines[0] in _audit_lines(home)  # kept byte for byte, still reported
    assert cli("audit").code == 5


def test_attack_18_a_torn_last_append_is_dropped_not_damage(cli, home):
    _trail(cli)
    path = home / "data/default.audit"
    path.write_bytes(path.read_bytes() + b"a2.deadbeef.AAAA")  # a crash mid-append
    assert cli("audit").code == 0
    assert cli("remember", "one more").code == 0
    audit = cli("audit", "--json")
    assert audit.code == 0 and len(json.loads(audit.out)) == 4


def test_an_append_reads_only_the_ends_of_a_long_trail(engine_factory, home, monkeypatch):
    """The chain needs the last line alone: an append must not read (and split) the
    whole trail, which grows with every write, and must find the last line however
    long it is (an import of 3000 ids is one 60 KB line, longer than one read)."""
    from memos_cli.core import audit

    eng = engine_factory()
    eng.remember_many([NewMemory(f"note {n}") for n in range(3000)])
    path = home / "data/default.audit"

    def whole(self):
        raise AssertionError("the whole trail was read")

    with monkeypatch.context() as patched:
        patched.setattr(audit.AuditLog, "_raw", whole)
        engine_factory().remember(NewMemory("after a long line"))
        path.write_bytes(path.read_bytes() + b"a2.deadbeef.AAAA")  # and a torn append
        engine_factory().remember(NewMemory("after a torn one"))
    fresh = engine_factory()
    assert [len(e.ids) for e in fresh.audit()] == [3000, 1, 1]
    assert fresh.audit_log.damaged == 0


def _legacy_line(key: bytes, event: Event, context: str = "audit/default") -> bytes:
    from dataclasses import asdict

    payload = json.dumps(asdict(event), separators=(",", ":")).encode()
    sealed = crypto.seal(crypto.subkey(key, "audit/v1"), payload, context)
    return crypto.b64e(sealed).encode() + b"\n"


def test_attack_18_an_old_unchained_trail_is_read_and_migrated(engine_factory, home):
    eng = engine_factory()
    eng.remember(NewMemory("first"))
    key = eng.unlock().current.key
    old = [Event("2026-01-01T00:00:00Z", "remembered", ["a" * 32], "cli", 1),
           Event("2026-01-02T00:00:00Z", "updated", ["a" * 32], "cli", 1)]
    path = home / "data/default.audit"
    path.write_bytes(b"".join(_legacy_line(key, e) for e in old))
    assert [e.action for e in engine_factory().audit()] == ["remembered", "updated"]
    engine_factory().remember(NewMemory("second"))
    assert all(line.startswith(b"a2.") for line in path.read_bytes().splitlines())
    fresh = engine_factory()
    assert [e.action for e in fresh.audit()] == ["remembered", "updated", "remembered"]
    assert fresh.audit_log.damaged == 0


def test_attack_18_a_newer_audit_line_version_is_refused(engine_factory, home):
    eng = engine_factory()
    eng.remember(NewMemory("first"))
    path = home / "data/default.audit"
    path.write_bytes(path.read_bytes() + b"a9.x.y\n")
    with pytest.raises(VersionError):
        engine_factory().audit()


def test_real_use_old_vault_and_usage_files_are_still_read(engine_factory, home):
    eng = engine_factory()
    eng.remember(NewMemory("first"))
    key = eng.unlock().current.key
    vault = json.dumps({"v": 1, "secrets": {"llm.api_key": "sk-old"}}).encode()
    (home / "config/keys/default.vault").write_bytes(
        crypto.seal(crypto.subkey(key, "vault/v1"), vault, "vault/default"))
    assert engine_factory().secret("llm.api_key") == "sk-old"
    (home / "config/keys/default.vault").write_bytes(b'{"format": "memos-vault", "version": 9}\n')
    with pytest.raises(VersionError):
        engine_factory().secret("llm.api_key")


def test_real_use_vault_that_fails_its_check_is_an_error_not_empty(engine_factory, home):
    eng = engine_factory()
    eng.remember(NewMemory("first"))
    eng.set_secret("llm.api_key", "sk-1")
    path = home / "config/keys/default.vault"
    path.write_bytes(_flip(path.read_bytes(), len(path.read_bytes()) - 5))
    with pytest.raises(IntegrityError):
        engine_factory().secret("llm.api_key")
    with pytest.raises(IntegrityError):
        engine_factory().rotate_key()  # never re-sealed as an empty vault
    assert engine_factory().keys.status()["rotation_pending"] is True
    assert path.exists()


# --- passphrases (issue 9 §3) ---------------------------------------------------------------------


def test_real_use_engine_passphrase_callback_protects_a_new_store(engine_factory, home):
    asked: list[str] = []

    def callback(prompt: str) -> str:
        asked.append(prompt)
        return "library words"

    engine_factory(passphrase=callback).remember(NewMemory("hello"))
    doc = json.loads((home / "config/keys/default.json").read_text())
    assert doc["mode"] == "passphrase" and asked
    assert not (home / "config/keys/default.secret").exists()
    with pytest.raises(WrongKeyError):
        engine_factory(passphrase=lambda _p: "other words").list()
    assert [m.text for m in engine_factory(passphrase=callback).list()] == ["hello"]


def test_real_use_passphrase_for_a_key_file_profile_is_said_once(cli, monkeypatch):
    assert cli("remember", "hello").code == 0
    monkeypatch.setenv("MEMOS_PASSPHRASE", "a wrong one")
    result = cli("recall", "hello")
    assert result.code == 0
    assert result.err.count("MEMOS_PASSPHRASE is ignored") == 1
    assert "key file" in result.err


# --- secrets and settings (issue 9 §3) ------------------------------------------------------------


@pytest.fixture
def embeddings_endpoint():
    from test_embedding import EmbeddingsServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), EmbeddingsServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_real_use_embedding_api_key_is_read_from_the_vault(cli, embeddings_endpoint):
    assert cli("config", "set", "embedding.model", "openai:tiny-embed").code == 0
    assert cli("config", "set", "embedding.base_url", embeddings_endpoint).code == 0
    assert cli("config", "set", "embedding.api_key", "good-key").code == 0
    result = cli("remember", "the boiler code is 4471")
    assert result.code == 0, result.err
    assert "boiler" in cli("recall", "boiler code").out


def test_real_use_store_leaves_os_environ_alone(engine_factory, monkeypatch):
    monkeypatch.delenv("ANONYMIZED_TELEMETRY", raising=False)
    before = dict(os.environ)
    engine_factory().remember(NewMemory("hello"))
    assert dict(os.environ) == before


def test_real_use_config_value_outside_the_bmp_round_trips(cli, home):
    assert cli("config", "set", "llm.model", "x😀").code == 0
    shown = cli("config", "show", "--json")
    assert shown.code == 0 and _setting(shown.out, "llm.model") == ("x😀", "file")
    assert cli("remember", "hello").code == 0
    assert cli("list").code == 0
    assert cli("config", "unset", "llm.model").code == 0
    assert _setting(cli("config", "show", "--json").out, "llm.model") == (None, "default")


def _setting(shown: str, name: str) -> tuple:
    """(value, source) of one setting in ``config show --json``."""
    [setting] = [s for s in json.loads(shown)["settings"] if s["name"] == name]
    return setting["value"], setting["source"]


def test_real_use_config_written_by_the_old_writer_is_still_read(cli, home):
    config = home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('version = 1\n\n[llm]\nmodel = "x\\ud83d\\ude00"\n')
    shown = cli("config", "show", "--json")
    assert shown.code == 0 and _setting(shown.out, "llm.model") == ("x😀", "file")
    assert cli("config", "unset", "llm.model").code == 0


def test_real_use_zero_temperature_set_by_the_user_wins(home, monkeypatch):
    from memos_cli.core.config import llm_settings, set_value
    from memos_cli.core.paths import resolve_paths

    paths = resolve_paths()
    set_value(paths, "llm.model", "m")
    set_value(paths, "llm.temperature", "0")
    assert llm_settings(paths, env={}).temperature == 0.0
    assert llm_settings(paths, {"temperature": 0.7}, env={}).temperature == 0.7
    set_value(paths, "llm.base_url", "")
    set_value(paths, "llm.preset", "ollama")
    assert llm_settings(paths, env={}).base_url is None  # the user's empty value wins
