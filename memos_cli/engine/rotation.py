"""Re-sealing a profile under another key: its rows, then its side files.

A key rotation runs these under the store lock (``keyadmin.rotate_key``), and the
next opening runs them again if a rotation was killed (``opening``): every step can
run twice, because rows and files name the key they are sealed under.
"""

from __future__ import annotations

import numpy as np

from memos_cli.core import crypto
from memos_cli.core.failpoint import failpoint
from memos_cli.core.keys import Unlocked
from memos_cli.search.keyword import KeywordIndex
from memos_cli.core.records import RecordCodec
from memos_cli.engine.state import Progress, ProfileState, store_meta


def rotate_rows(s: ProfileState, progress: Progress | None = None) -> int:
    """Re-seal rows, then every side file, under the next key; only then drop the old
    one. Each step can run again after a kill: rows and files name their key."""
    assert s.unlocked is not None and s.unlocked.next is not None
    old, new = s.unlocked.current, s.unlocked.next
    count = 0
    if s.store.exists():
        codec = s.new_codec()
        rows = [r for r in s.store.scan(with_vectors=True) if r.meta.get("k") == old.key_id]
        for row in rows:
            memory = codec.open(row)
            assert row.vector is not None  # scanned with vectors
            # Undo the old rotation and apply the new one: no re-embedding needed.
            vector = row.vector.astype(np.float32) @ old.rotation(len(row.vector))
            blinded = crypto.blind(vector[None, :], new.rotation(len(row.vector)))
            s.store.update([row.id], [codec.seal(memory, key=new, vector=blinded[0])],
                           blinded)
            count += 1
            failpoint("rotate:row-done")
            if progress:
                progress(count, len(rows))
        s.store.set_meta(store_meta(new, {
            k: v for k, v in s.store.meta().items() if k.startswith("embed_")}))
        s.store.compact()  # old ciphertexts leave SQLite's free pages
    failpoint("rotate:rows-done")
    reseal_side_files(s, s.unlocked)
    s.audit("key changed", [], count=count)  # under the next key, before the old goes
    failpoint("rotate:before-finish")
    s.unlocked = s.keys.finish_rotation(s.unlocked)
    failpoint("rotate:finished")
    s.codec = s.new_codec() if s.store.exists() else RecordCodec(s.unlocked)
    return count


def reseal_side_files(s: ProfileState, keys: Unlocked) -> None:
    """Re-seal the keyword index, audit trail, vault and usage counts under the writing
    key of ``keys`` (which must also hold the key they are sealed under now)."""
    index = KeywordIndex.load(s.paths.keyword_file(s.profile), keys, s.keyword_context)
    if index is not None:
        index.save(s.paths.keyword_file(s.profile), keys, s.keyword_context)
    else:  # damaged or absent: it is a cache, rebuilt when next needed
        s.paths.keyword_file(s.profile).unlink(missing_ok=True)
        s.paths.keyword_delta_file(s.profile).unlink(missing_ok=True)
    s.keywords = None
    s.listing.drop()  # derived, and small: rebuilt rather than re-sealed
    failpoint("reseal:index")
    s.audit_log.reseal(keys)
    failpoint("reseal:audit")
    s.vault().reseal(keys)
    failpoint("reseal:vault")
    s.usage.reseal(keys)
