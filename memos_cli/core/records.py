"""Sealing memories into Chroma rows and opening them again.

A row's metadata is ``{"c": ciphertext, "k": key id, "h": keyed text hash,
"v": sealed vector fingerprint}``: the whole ``Memory`` (text, kind, tags, dates, history)
is inside ``c``, sealed with the record id as associated data. ``k`` says which data
key sealed it (two exist only while ``key rotate`` runs). ``h`` finds exact
duplicates without the text; ``v`` binds the row's vector to its id. Both are
checked against the record on reading, so a digest or vector moved from another
row makes the row damaged, never another memory's stand-in.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from memos_cli.core import crypto
from memos_cli.core.errors import BadInputError, IntegrityError
from memos_cli.core.keys import DataKey, Unlocked
from memos_cli.core.memory import Memory, memory_from_payload, payload_from_memory


class RecordCodec:
    """Turns ``Memory`` objects into sealed row metadata and back, for one unlocked key set.

    ``vector_tags``: the store binds every vector (stores made before vectors were
    bound have rows without ``v``; those are accepted until re-written)."""

    def __init__(self, unlocked: Unlocked, vector_tags: bool = True) -> None:
        self.unlocked = unlocked
        self.vector_tags = vector_tags

    @property
    def _writing_key(self) -> DataKey:
        # Mid-rotation, everything new is written under the next key.
        return self.unlocked.next or self.unlocked.current

    def seal(self, memory: Memory, key: DataKey | None = None,
             vector: np.ndarray | None = None) -> dict[str, Any]:
        """Row metadata for ``memory``; give the (blinded) ``vector`` when it is written too."""
        key = key or self._writing_key
        payload = json.dumps(payload_from_memory(memory), ensure_ascii=False,
                             separators=(",", ":")).encode("utf-8")
        blob = crypto.seal(key.key, payload, memory.id)
        meta = {"c": crypto.b64e(blob), "k": key.key_id,
                "h": crypto.text_tag(key.key, memory.text)}
        if vector is not None:
            meta["v"] = crypto.vector_print(key.key, memory.id, vector)
        return meta

    def _key(self, row: Any) -> DataKey:
        key = self.unlocked.by_id(str(row.meta.get("k")))
        if key is None:
            raise IntegrityError(f"memory {row.id[:8]} is sealed with an unknown key")
        return key

    def open(self, row: Any) -> Memory:
        key = self._key(row)
        plaintext = crypto.unseal(key.key, crypto.b64d(str(row.meta.get("c", ""))), row.id)
        try:
            memory = memory_from_payload(json.loads(plaintext))
        except (BadInputError, ValueError, KeyError, TypeError, AttributeError):
            # Authentic but unusable (say, imported by an older memos that did not check
            # field types): reported as damaged, so it never stops the other records.
            raise IntegrityError(f"memory {row.id[:8]} is damaged: its fields are invalid") from None
        if memory.id != row.id:  # the AAD binds it, but be explicit
            raise IntegrityError(f"memory {row.id[:8]} failed its integrity check")
        if row.meta.get("h") != crypto.text_tag(key.key, memory.text):
            raise IntegrityError(f"memory {row.id[:8]}: its duplicate digest is not its text's")
        if row.vector is not None:
            self.check_vector(row, key)
        return memory

    def check_vector(self, row: Any, key: DataKey | None = None) -> None:
        """Raise ``IntegrityError`` unless ``row.vector`` is the vector sealed for this row."""
        sealed = row.meta.get("v")
        if sealed is None and not self.vector_tags:
            return
        key = key or self._key(row)
        if sealed is None or not crypto.vector_matches(key.key, row.id, row.vector, str(sealed)):
            raise IntegrityError(f"memory {row.id[:8]}: its vector is not the one stored for it")

    def tag_vector(self, meta: dict[str, Any], memory_id: str,
                   vector: np.ndarray) -> dict[str, Any]:
        """``meta`` (an existing row's) bound to a new ``vector`` (reindex)."""
        key = self.unlocked.by_id(str(meta.get("k"))) or self._writing_key
        return {**meta, "v": crypto.vector_print(key.key, memory_id, vector)}

    def text_tag(self, text: str) -> str:
        return crypto.text_tag(self._writing_key.key, text)

    def blind(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        return crypto.blind(vectors, self._writing_key.rotation(vectors.shape[1]))
