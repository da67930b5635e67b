"""The vault: small secrets (API keys) sealed under the profile's data key.

``keys/<profile>.vault`` holds one sealed JSON object, tagged with the id of the key
that sealed it (``sealed.py``). Nothing in it is ever written in plaintext, and it
goes with the profile's key when the profile is destroyed. A vault that fails its
check is an error, never silently an empty vault: that would lose the secrets.
"""

from __future__ import annotations

import json
from pathlib import Path

from memos_cli.core.atomic import write_atomic
from memos_cli.core.errors import IntegrityError, VersionError
from memos_cli.core.keys import Unlocked
from memos_cli.core.sealed import open_file, seal_file

VAULT_FORMAT = "memos-vault"
VAULT_VERSION = 2  # 1: a bare sealed blob, without the key id
PURPOSE = "vault/v1"


class Vault:
    def __init__(self, path: Path, profile: str) -> None:
        self.path, self.context = path, f"vault/{profile}"

    def read(self, keys: Unlocked) -> dict[str, str]:
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        _key_id, payload = open_file(self.path, blob, VAULT_FORMAT, VAULT_VERSION, keys,
                                     PURPOSE, self.context)
        try:
            doc = json.loads(payload)
            if int(doc.get("v", 0)) > VAULT_VERSION:
                raise VersionError("the vault was written by a later memos: upgrade memos")
            return {str(k): str(v) for k, v in doc["secrets"].items()}
        except (ValueError, TypeError, KeyError, AttributeError):
            raise IntegrityError(f"{self.path} is damaged") from None

    def write(self, keys: Unlocked, secrets: dict[str, str]) -> None:
        """Seal ``secrets`` under the key new data is written with (mid-rotation: the next)."""
        payload = json.dumps({"v": VAULT_VERSION, "secrets": secrets}).encode()
        key = keys.next or keys.current
        write_atomic(self.path, seal_file(VAULT_FORMAT, VAULT_VERSION, key, PURPOSE, payload,
                                          self.context))

    def reseal(self, keys: Unlocked) -> None:
        """Re-seal under the writing key; a vault that does not open stops this (exit 5)."""
        if self.path.exists():
            self.write(keys, self.read(keys))
