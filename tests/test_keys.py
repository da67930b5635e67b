"""Where the data key comes from, how it is protected, and how it changes."""

from __future__ import annotations

import json
import stat

import pytest

from memos_cli.engine import NewMemory
from memos_cli.core.errors import WrongKeyError


FRUIT = ("apple", "banana", "cherry", "damson", "elderberry", "fig")


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_file_mode_is_0600_in_a_0700_folder_with_a_warning(engine_factory, home):
    eng = engine_factory()
    eng.remember(NewMemory("hello"))
    keys = home / "config" / "keys"
    assert _mode(keys) == 0o700
    assert _mode(keys / "default.json") == 0o600
    assert _mode(keys / "default.secret") == 0o600
    assert len([n for n in eng.notices if "beside your data" in n]) == 1
    eng.remember(NewMemory("again"))
    assert len([n for n in eng.notices if "beside your data" in n]) == 1
    assert engine_factory().keys.status()["mode"] == "keyfile"


def test_passphrase_mode_needs_the_passphrase(engine_factory, home, monkeypatch):
    monkeypatch.setenv("MEMOS_PASSPHRASE", "correct horse")
    engine_factory().remember(NewMemory("hello"))
    doc = json.loads((home / "config/keys/default.json").read_text())
    assert doc["mode"] == "passphrase" and doc["kdf"]["name"] == "argon2id"
    assert "salt" in doc["kdf"] and not (home / "config/keys/default.secret").exists()
    monkeypatch.setenv("MEMOS_PASSPHRASE", "wrong horse")
    with pytest.raises(WrongKeyError):
        engine_factory().list()
    monkeypatch.delenv("MEMOS_PASSPHRASE")
    with pytest.raises(WrongKeyError, match="MEMOS_PASSPHRASE"):
        engine_factory().list()


def test_change_passphrase_from_key_file_removes_the_key_file(engine_factory, home, monkeypatch):
    eng = engine_factory()
    eng.remember(NewMemory("hello"))
    eng.change_passphrase("new secret")
    assert not (home / "config/keys/default.secret").exists()
    monkeypatch.setenv("MEMOS_PASSPHRASE", "new secret")
    assert [m.text for m in engine_factory().list()] == ["hello"]
    engine_factory().change_passphrase("newer secret")
    monkeypatch.setenv("MEMOS_PASSPHRASE", "new secret")
    with pytest.raises(WrongKeyError):
        engine_factory().list()
    monkeypatch.setenv("MEMOS_PASSPHRASE", "newer secret")
    assert [m.text for m in engine_factory().list()] == ["hello"]


def test_passphrase_change_that_cannot_open_the_store_keeps_the_old_wrap(engine_factory, home):
    eng = engine_factory()
    eng.remember(NewMemory("hello"))
    before = (home / "config/keys/default.json").read_bytes()
    from memos_cli.core import keys as keys_module

    real = keys_module.KeyStore.set_passphrase

    def tamper(self, new, unlocked, proves):  # a new wrap of the wrong data key
        bad = keys_module.Unlocked(keys_module.DataKey(unlocked.current.key_id,
                                                       keys_module.crypto.random_key()))
        return real(self, new, bad, proves)

    keys_module.KeyStore.set_passphrase = tamper
    try:
        with pytest.raises(WrongKeyError):
            eng.change_passphrase("whatever")
    finally:
        keys_module.KeyStore.set_passphrase = real
    assert (home / "config/keys/default.json").read_bytes() == before
    assert (home / "config/keys/default.secret").exists()


def test_rotate_re_encrypts_everything_under_a_new_key(engine_factory, home):
    eng = engine_factory()
    eng.remember_many([NewMemory(f"memory number {n}") for n in range(7)])
    old_id = eng.keys.status()["key_id"]
    assert eng.rotate_key() == 7
    fresh = engine_factory()
    assert fresh.keys.status()["key_id"] != old_id
    assert len(fresh.list()) == 7
    top = fresh.recall("memory number 3", 1)[0]
    assert top.memory.text == "memory number 3" and top.score > 0.99
    assert {row.meta["k"] for row in fresh.store.scan()} == {fresh.keys.status()["key_id"]}


def test_rotation_interrupted_half_way_resumes_at_next_open(engine_factory):
    eng = engine_factory()
    eng.remember_many([NewMemory(f"memory about {w}") for w in FRUIT])
    real_update, calls = eng.store.update, []

    def dies_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_update(*args, **kwargs)

    eng.store.update = dies_on_the_third
    with pytest.raises(KeyboardInterrupt):
        eng.rotate_key()
    fresh = engine_factory()
    assert fresh.keys.status()["rotation_pending"]
    assert len(fresh.list()) == 6  # opening resumes and finishes the rotation
    assert not engine_factory().keys.status()["rotation_pending"]
    top = engine_factory().recall("memory about cherry", 1)[0]
    assert top.memory.text == "memory about cherry" and top.score > 0.99


class MemoryKeyring:
    """A recommended in-memory keyring backend, for tests only."""

    def __init__(self, priority: float) -> None:
        from keyring.backend import KeyringBackend

        outer = self

        class Backend(KeyringBackend):
            def get_password(self, service, user):
                return outer.items.get((service, user))

            def set_password(self, service, user, password):
                outer.items[(service, user)] = password

            def delete_password(self, service, user):
                outer.items.pop((service, user), None)

        Backend.priority = priority
        self.items: dict = {}
        self.backend = Backend()


def test_recommended_keyring_holds_the_kek(engine_factory, home, monkeypatch):
    import keyring

    store = MemoryKeyring(priority=5)
    monkeypatch.setattr(keyring, "get_keyring", lambda: store.backend)
    eng = engine_factory(use_keyring=True)
    eng.remember(NewMemory("hello"))
    assert eng.keys.status()["mode"] == "keyring"
    assert not (home / "config/keys/default.secret").exists()
    assert list(store.items) == [("memos", "default")]
    assert [m.text for m in engine_factory(use_keyring=True).list()] == ["hello"]
    engine_factory(use_keyring=True).forget_all()
    assert store.items == {}


def test_low_priority_keyring_is_not_trusted(engine_factory, monkeypatch):
    import keyring

    store = MemoryKeyring(priority=0.5)
    monkeypatch.setattr(keyring, "get_keyring", lambda: store.backend)
    eng = engine_factory(use_keyring=True)
    eng.remember(NewMemory("hello"))
    assert eng.keys.status()["mode"] == "keyfile" and store.items == {}


def test_newer_key_file_is_refused(engine_factory, home):
    from memos_cli.core.errors import VersionError

    engine_factory().remember(NewMemory("hello"))
    path = home / "config/keys/default.json"
    doc = json.loads(path.read_text())
    doc["version"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(VersionError, match="later version"):
        engine_factory().list()
