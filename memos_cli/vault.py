"""The vault: small secrets (API keys) sealed under the profile's data key.

``keys/<profile>.vault`` holds one sealed JSON object. Nothing in it is ever written
in plaintext, and it goes with the profile's key when the profile is destroyed.
"""

from __future__ import annotations

import json
from pathlib import Path

from memos_cli import crypto
from memos_cli.atomic import write_atomic
from memos_cli.errors import IntegrityError, VersionError

VAULT_VERSION = 1


class Vault:
    def __init__(self, path: Path, profile: str) -> None:
        self.path, self.context = path, f"vault/{profile}"

    def read(self, key: bytes) -> dict[str, str]:
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        doc = json.loads(crypto.unseal(crypto.subkey(key, "vault/v1"), blob, self.context))
        if int(doc.get("v", 0)) > VAULT_VERSION:
            raise VersionError("the vault was written by a later memos: upgrade memos")
        return dict(doc["secrets"])

    def write(self, key: bytes, secrets: dict[str, str]) -> None:
        payload = json.dumps({"v": VAULT_VERSION, "secrets": secrets}).encode()
        write_atomic(self.path, crypto.seal(crypto.subkey(key, "vault/v1"), payload, self.context))

    def rekey(self, old: bytes, new: bytes) -> None:
        try:
            secrets = self.read(old)
        except IntegrityError:
            return
        if secrets:
            self.write(new, secrets)
