"""Sealing, key wrapping and vector blinding."""

from __future__ import annotations

import numpy as np
import pytest

from memos_cli.core import crypto
from memos_cli.core.errors import IntegrityError, WrongKeyError


def test_seal_round_trip_and_every_flipped_byte_is_caught():
    key = crypto.random_key()
    blob = crypto.seal(key, b"my bank is in Porto", "rec1")
    assert crypto.unseal(key, blob, "rec1") == b"my bank is in Porto"
    for i in range(len(blob)):
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        with pytest.raises(IntegrityError):
            crypto.unseal(key, bytes(tampered), "rec1")


def test_ciphertext_is_bound_to_its_record_id():
    key = crypto.random_key()
    blob = crypto.seal(key, b"payload", "rec1")
    with pytest.raises(IntegrityError):
        crypto.unseal(key, blob, "rec2")


def test_wrong_key_gives_the_same_error_as_tampering():
    blob = crypto.seal(crypto.random_key(), b"payload", "rec1")
    with pytest.raises(IntegrityError) as caught:
        crypto.unseal(crypto.random_key(), blob, "rec1")
    assert str(caught.value) == "a stored record failed its integrity check"


def test_wrap_with_wrong_passphrase_is_a_key_error():
    params = crypto.new_kdf_params()
    data_key = crypto.random_key()
    wrapped = crypto.wrap_key(crypto.derive_kek("right", params), data_key, "k1")
    assert crypto.unwrap_key(crypto.derive_kek("right", params), wrapped, "k1") == data_key
    with pytest.raises(WrongKeyError):
        crypto.unwrap_key(crypto.derive_kek("wrong", params), wrapped, "k1")


def test_kdf_prefers_argon2id_and_falls_back_to_scrypt(monkeypatch):
    assert crypto.new_kdf_params().name == "argon2id"
    monkeypatch.setattr(crypto, "_has_argon2id", lambda: False)
    params = crypto.new_kdf_params()
    assert params.name == "scrypt"
    restored = crypto.KdfParams.from_json(params.to_json())
    assert crypto.derive_kek("pw", restored) == crypto.derive_kek("pw", params)


def test_production_kdf_cost_without_the_test_switch(monkeypatch):
    monkeypatch.delenv(crypto.WEAK_KDF_ENV)
    params = crypto.new_kdf_params()
    assert params.cost["memory_cost"] >= 64 * 1024 and params.cost["iterations"] >= 3


def test_rotation_is_orthogonal_and_keeps_cosine_similarity():
    key = crypto.random_key()
    rotation = crypto.rotation_matrix(key, 384)
    assert np.allclose(rotation @ rotation.T, np.eye(384), atol=1e-5)
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((50, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    blinded = crypto.blind(vectors, rotation)
    assert np.allclose(vectors @ vectors.T, blinded @ blinded.T, atol=1e-5)
    # ...but the blinded vectors themselves are unrelated to the originals.
    assert np.abs(np.sum(vectors * blinded, axis=1)).max() < 0.3


def test_rotation_depends_only_on_the_key():
    key = crypto.random_key()
    assert np.array_equal(crypto.rotation_matrix(key, 32), crypto.rotation_matrix(key, 32))
    assert not np.allclose(crypto.rotation_matrix(key, 32),
                           crypto.rotation_matrix(crypto.random_key(), 32))


def test_text_tag_is_keyed():
    a, b = crypto.random_key(), crypto.random_key()
    assert crypto.text_tag(a, "hello ") == crypto.text_tag(a, "hello")
    assert crypto.text_tag(a, "hello") != crypto.text_tag(b, "hello")
