"""The cryptography of memos: sealing records, deriving and wrapping keys, blinding vectors.

Everything secret that leaves this process goes through here:
- record payloads are sealed with AES-256-GCM, the record id bound as associated
  data so one record's ciphertext cannot be moved onto another;
- the random data key is wrapped by a key-encryption key (from a passphrase via
  Argon2id or scrypt, the OS keyring, or a key file);
- vectors are multiplied by a secret orthogonal matrix derived from the data key,
  which keeps cosine similarity and hides the embedding from inversion models;
- exact-duplicate detection uses a keyed hash, never the text.
Every failure to open a ciphertext raises the same ``IntegrityError`` (no oracle).
This module never writes files and never logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from memos_cli.core.errors import IntegrityError, WrongKeyError

KEY_BYTES = 32
NONCE_BYTES = 12
SEAL_VERSION = 1  # first byte of every sealed blob
WEAK_KDF_ENV = "MEMOS_INSECURE_TEST_KDF"  # test-only: makes the KDF cheap


def random_key() -> bytes:
    return os.urandom(KEY_BYTES)


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64d(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise IntegrityError("stored data is not valid base64: it was altered") from None


def seal(key: bytes, plaintext: bytes, context: str) -> bytes:
    """Encrypt and authenticate ``plaintext``, bound to ``context`` (a record id)."""
    nonce = os.urandom(NONCE_BYTES)
    aad = _aad(context)
    return bytes([SEAL_VERSION]) + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, blob: bytes | memoryview, context: str) -> bytes:
    """Inverse of :func:`seal`; any tampering or wrong key raises ``IntegrityError``."""
    if len(blob) < 1 + NONCE_BYTES + 16 or blob[0] != SEAL_VERSION:
        raise IntegrityError("a stored record failed its integrity check")
    view = memoryview(blob)  # no copy of the body (the keyword index is 35 MB at 100k)
    nonce, body = bytes(view[1 : 1 + NONCE_BYTES]), view[1 + NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, _aad(context))
    except InvalidTag:
        raise IntegrityError("a stored record failed its integrity check") from None


def _aad(context: str) -> bytes:
    return b"memos/seal/v1/" + context.encode("utf-8")


def subkey(key: bytes, purpose: str) -> bytes:
    """A key for one purpose, derived from the data key with HKDF-SHA256."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                info=b"memos/" + purpose.encode()).derive(key)


def text_tag(key: bytes, text: str) -> str:
    """Keyed hash of a text for exact-duplicate detection (a blind index)."""
    digest = hmac.new(subkey(key, "dedup/v1"), text.strip().encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:32]


VECTOR_PRINT = 16  # components of a vector sealed with its record, to detect a swap
VECTOR_TOLERANCE = 1e-3  # Chroma hands vectors back re-normalised: equal to a few ulps only


def vector_print(key: bytes, record_id: str, vector: np.ndarray) -> str:
    """A sealed fingerprint of a stored (blinded) vector, bound to its record id."""
    head = np.asarray(vector, dtype=np.float32)[:VECTOR_PRINT].tobytes()
    return b64e(seal(key, head, "vector/" + record_id))


def vector_matches(key: bytes, record_id: str, vector: np.ndarray, sealed: str) -> bool:
    """Whether ``vector`` is (up to rounding) the one fingerprinted for ``record_id``."""
    head = np.frombuffer(unseal(key, b64d(sealed), "vector/" + record_id), dtype=np.float32)
    mine = np.asarray(vector, dtype=np.float32)[:VECTOR_PRINT]
    return len(head) == len(mine) and bool(np.abs(head - mine).max() <= VECTOR_TOLERANCE)


# --- key-encryption keys -----------------------------------------------------------


@dataclass(frozen=True)
class KdfParams:
    """How a passphrase becomes a key: stored beside the wrap, never secret."""

    name: str  # "argon2id" or "scrypt"
    salt: bytes
    cost: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "salt": b64e(self.salt), **self.cost}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "KdfParams":
        """Parameters read from a file, bounded: raises ``IntegrityError`` if damaged."""
        try:
            cost = {k: int(v) for k, v in data.items() if k not in ("name", "salt")}
            params = cls(name=str(data["name"]), salt=b64d(data["salt"]), cost=cost)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise IntegrityError("the key derivation parameters are damaged") from None
        _check_bounds(params)
        return params


# Parameters come from files (key files, key exports, backup headers): a damaged or
# hostile one must not make memos hang for minutes or ask for gigabytes. Each bound is
# well above what memos writes (Argon2id t=3, p=4, m=64 MiB; scrypt n=2^17, r=8, p=1),
# the memory at most 512 MiB and the total work at most 8 times memos' own.
_KDF_BOUNDS = {"argon2id": {"iterations": (1, 16), "lanes": (1, 16), "memory_cost": (8, 1 << 19)},
               "scrypt": {"n": (2, 1 << 20), "r": (1, 32), "p": (1, 16)}}
_KDF_MAX_WORK = {"argon2id": 8 * 3 * 64 * 1024, "scrypt": 8 * 8 * 2**17}  # t*m, n*r*p


def _check_bounds(params: KdfParams) -> None:
    bounds = _KDF_BOUNDS.get(params.name)
    if bounds is None:
        raise WrongKeyError(f"unknown key derivation {params.name!r}: made by a newer memos?")
    cost = params.cost
    inside = (set(cost) == set(bounds) and 8 <= len(params.salt) <= 64
              and all(low <= cost[k] <= high for k, (low, high) in bounds.items()))
    if inside and params.name == "argon2id":
        inside = (cost["memory_cost"] >= 8 * cost["lanes"]
                  and cost["iterations"] * cost["memory_cost"] <= _KDF_MAX_WORK["argon2id"])
    elif inside:
        inside = (cost["n"] & (cost["n"] - 1) == 0 and 128 * cost["n"] * cost["r"] <= 1 << 29
                  and cost["n"] * cost["r"] * cost["p"] <= _KDF_MAX_WORK["scrypt"])
    if not inside:
        raise IntegrityError("the key derivation parameters are out of bounds: "
                             "the file is damaged, or was not made by memos")


def new_kdf_params() -> KdfParams:
    """Argon2id (RFC 9106's second recommendation) where OpenSSL has it, else scrypt."""
    weak = os.environ.get(WEAK_KDF_ENV) == "1"
    salt = os.urandom(16)
    if _has_argon2id():
        cost = {"iterations": 1, "lanes": 1, "memory_cost": 8} if weak else {
            "iterations": 3, "lanes": 4, "memory_cost": 64 * 1024}
        return KdfParams("argon2id", salt, cost)
    cost = {"n": 2**4, "r": 8, "p": 1} if weak else {"n": 2**17, "r": 8, "p": 1}
    return KdfParams("scrypt", salt, cost)


def derive_kek(passphrase: str, params: KdfParams) -> bytes:
    secret = passphrase.encode("utf-8")
    if params.name == "argon2id":
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        cost = params.cost
        return Argon2id(salt=params.salt, length=KEY_BYTES, iterations=cost["iterations"],
                        lanes=cost["lanes"], memory_cost=cost["memory_cost"]).derive(secret)
    if params.name == "scrypt":
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

        return Scrypt(salt=params.salt, length=KEY_BYTES, **params.cost).derive(secret)
    raise WrongKeyError(f"unknown key derivation {params.name!r}: made by a newer memos?")


def _has_argon2id() -> bool:
    try:
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        Argon2id(salt=b"\0" * 16, length=32, iterations=1, lanes=1, memory_cost=8).derive(b"x")
        return True
    except Exception:  # ImportError, or UnsupportedAlgorithm on an older OpenSSL
        return False


def wrap_key(kek: bytes, data_key: bytes, key_id: str) -> bytes:
    return seal(kek, data_key, "wrap/" + key_id)


def unwrap_key(kek: bytes, wrapped: bytes, key_id: str) -> bytes:
    """Unwrap the data key; a wrong KEK (wrong passphrase) raises ``WrongKeyError``."""
    return unwrap_key_with_context(kek, wrapped, "wrap/" + key_id)


def unwrap_key_with_context(kek: bytes, wrapped: bytes, context: str) -> bytes:
    try:
        return unseal(kek, wrapped, context)
    except IntegrityError:
        raise WrongKeyError("wrong passphrase or key: the data key would not unwrap") from None


# --- vector blinding ----------------------------------------------------------------


def rotation_matrix(key: bytes, dim: int) -> np.ndarray:
    """A secret orthogonal ``dim x dim`` matrix, the same for the same key on any machine.

    Gaussian entries come from SHAKE-256 (not numpy's RNG, whose streams may change
    between versions) via Box-Muller; QR with a sign fix gives a Haar-random rotation.
    """
    seed = subkey(key, f"rotation/v1/{dim}")
    pairs = (dim * dim + 1) // 2
    ints = np.frombuffer(hashlib.shake_256(seed).digest(16 * pairs), dtype="<u8")
    uniform = (ints.astype(np.float64) + 0.5) / 2.0**64  # strictly inside (0, 1)
    radius = np.sqrt(-2.0 * np.log(uniform[:pairs]))
    angle = 2.0 * np.pi * uniform[pairs:]
    normals = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])
    gauss = normals[: dim * dim].reshape(dim, dim)
    q, r = np.linalg.qr(gauss)
    q *= np.sign(np.diag(r))  # make the factorisation unique
    return q.astype(np.float32)


def blind(vectors: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Rotate row vectors: dot products (and so cosine similarity) are unchanged."""
    return np.ascontiguousarray(vectors @ rotation.T, dtype=np.float32)
