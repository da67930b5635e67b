"""Sealing memories into Chroma rows and opening them again.

A row's metadata is ``{"c": ciphertext, "k": key id, "h": keyed text hash}``: the
whole ``Memory`` (text, kind, tags, dates, history) is inside ``c``, sealed with
the record id as associated data. ``k`` says which data key sealed it (two exist
only while ``key rotate`` runs). ``h`` finds exact duplicates without the text.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from memos_cli import crypto
from memos_cli.errors import IntegrityError
from memos_cli.keys import DataKey, Unlocked
from memos_cli.memory import Memory, memory_from_payload, payload_from_memory


class RecordCodec:
    """Turns ``Memory`` objects into sealed row metadata and back, for one unlocked key set."""

    def __init__(self, unlocked: Unlocked) -> None:
        self.unlocked = unlocked

    @property
    def _writing_key(self) -> DataKey:
        # Mid-rotation, everything new is written under the next key.
        return self.unlocked.next or self.unlocked.current

    def seal(self, memory: Memory, key: DataKey | None = None) -> dict[str, Any]:
        key = key or self._writing_key
        payload = json.dumps(payload_from_memory(memory), ensure_ascii=False,
                             separators=(",", ":")).encode("utf-8")
        blob = crypto.seal(key.key, payload, memory.id)
        return {"c": crypto.b64e(blob), "k": key.key_id,
                "h": crypto.text_tag(key.key, memory.text)}

    def open(self, row: Any) -> Memory:
        key = self.unlocked.by_id(str(row.meta.get("k")))
        if key is None:
            raise IntegrityError(f"memory {row.id[:8]} is sealed with an unknown key")
        plaintext = crypto.unseal(key.key, crypto.b64d(str(row.meta.get("c", ""))), row.id)
        memory = memory_from_payload(json.loads(plaintext))
        if memory.id != row.id:  # the AAD binds it, but be explicit
            raise IntegrityError(f"memory {row.id[:8]} failed its integrity check")
        return memory

    def text_tag(self, text: str) -> str:
        return crypto.text_tag(self._writing_key.key, text)

    def blind(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        return crypto.blind(vectors, self._writing_key.rotation(vectors.shape[1]))
