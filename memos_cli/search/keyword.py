"""The keyword side of recall: BM25 over memories and their neighbours, kept sealed on disk.

Dense vectors miss exact words (names of places, products, rare nouns); BM25 finds
them. Each memory is scored as a small window: its own words count twice, and the
words of up to two memories recorded just before and after it in the same thread
(same occurred time, e.g. one conversation session, or one batch) count once,
because an answer often sits in the turn after the question that names the topic.

The index is derived data: it can always be rebuilt from the decrypted memories.
On disk it is two files per profile, each compressed and sealed with a key derived
from the data key, so no word of any memory is ever written in plaintext: the base
holds the compiled postings as arrays (loaded, not recompiled, by each process), and
a small delta holds the memories added since, so that ``remember`` rewrites only the
delta. The delta is folded into the base when it grows past ``DELTA_MAX`` entries,
when the base itself must change (a forgotten or edited memory in it), and when the
files are re-sealed under a new key.
"""

from __future__ import annotations

import json
import math
import mmap
import re
import secrets
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from memos_cli.core.atomic import file_identity, write_atomic
from memos_cli.core.errors import IntegrityError, VersionError
from memos_cli.core.paths import DELTA_SUFFIX
from memos_cli.core.sealed import map_file, open_file, read_header, seal_file

if TYPE_CHECKING:
    from memos_cli.core.keys import Unlocked

INDEX_VERSION = 2  # 2: hyphenated words also indexed whole
INDEX_FORMAT = "memos-keyword-index"
# 3: compiled arrays, with a delta file; 2: one file of JSON entries; 1: a bare sealed blob
INDEX_FILE_VERSION = 3
DELTA_FORMAT = "memos-keyword-delta"
DELTA_FILE_VERSION = 1
DELTA_MAX = 1000  # entries the delta holds before it is folded into the base
PURPOSE = "keyword-index/v1"
K1, B = 1.2, 0.75
SELF_WEIGHT, NEIGHBOUR_SPAN = 2, 2
COMMON_SHARE = 0.2  # a word in more than this share of memories says little about meaning
MIN_DOCS_FOR_COMMON = 50  # below this, shares are too noisy to judge a word common

_WORD = re.compile(r"[a-z0-9]+")
_COMPOUND = re.compile(r"\b[a-z]+(?:-[a-z]+)+\b")
STOPWORDS = frozenset("""
a an the and or but if of to in on at by for with about as is are was were be been being
do does did have has had i you he she it we they me him her them my your his its our their
this that these those what which who whom when where why how not no so than too very can
will just would could should any some there here from into up out over also am s t
""".split())


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return _stemmer().stemWord(word)


@lru_cache(maxsize=1)
def _stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("english")


def tokenize(text: str) -> list[str]:
    """Lower-case word stems without stopwords: what BM25 matches on. A hyphenated word
    also counts whole ("Wi-Fi" gives wi, fi and wifi), so "wifi" finds "Wi-Fi"."""
    text = text.lower()
    words = _WORD.findall(text) + [m.replace("-", "") for m in _COMPOUND.findall(text)]
    return [_stem(w) for w in words if w not in STOPWORDS]


@dataclass
class Entry:
    id: str
    thread: str  # memories of one thread are each other's neighbours
    tokens: list[str]


class KeywordIndex:
    """BM25 over neighbour windows, for one profile; entries kept in storage order.

    In memory as on disk: a compiled base and the entries added since (the delta).
    ``save`` writes only what changed: the delta alone after ``add``."""

    def __init__(self, entries: Sequence[Entry] = ()) -> None:
        self._base = _Compiled.of(list(entries))
        self._delta: list[Entry] = []
        self._generation = ""  # the saved base's token: a delta names the base it extends
        self._sealed_with: str | None = None  # the key id the files on disk are sealed with
        self._base_dirty, self._delta_dirty = True, False
        self._view: _View | None = None

    partial = False  # see ``for_append``

    def __len__(self) -> int:
        return self._base.n + len(self._delta)

    @property
    def entries(self) -> list[Entry]:
        """Every entry, in storage order (rebuilt from the arrays: not for hot paths)."""
        return self._base.entries() + self._delta

    @property
    def needs_save(self) -> bool:
        """Whether memory and disk differ (e.g. read from an older file format)."""
        return self._base_dirty or self._delta_dirty

    # --- changes ------------------------------------------------------------------

    def add(self, entries: Sequence[Entry]) -> None:
        self._delta.extend(entries)
        self._delta_dirty, self._view = True, None

    def remove(self, ids: Sequence[str]) -> None:
        gone = set(ids)
        if any(e.id in gone for e in self._delta):
            self._delta = [e for e in self._delta if e.id not in gone]
            self._delta_dirty, self._view = True, None
        if any(i in self._base.position for i in gone):
            self._fold([e for e in self._base.entries() if e.id not in gone])

    def replace(self, memory_id: str, tokens: list[str]) -> None:
        for entry in self._delta:
            if entry.id == memory_id:
                entry.tokens = tokens
                self._delta_dirty, self._view = True, None
        if memory_id in self._base.position:
            base = self._base.entries()
            for entry in base:
                if entry.id == memory_id:
                    entry.tokens = tokens
            self._fold(base)

    def _fold(self, base: list[Entry] | None = None) -> None:
        """Make the delta part of the base (``base``: the base's entries, changed), which
        is then written whole at the next save."""
        self._base = _Compiled.of((self._base.entries() if base is None else base) + self._delta)
        self._delta = []
        self._base_dirty, self._delta_dirty, self._view = True, False, None

    # --- queries ------------------------------------------------------------------

    def scores(self, query: str) -> tuple[list[str], np.ndarray]:
        """BM25 score of every memory (ids in storage order)."""
        compiled = self._compile()
        return compiled.ids, compiled.bm25(tokenize(query))

    def coverage(self, query: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(ids, own, window): for every memory, the share of the query's weight (IDF)
        found in its own words, and in its whole window (its thread neighbours' too), 0..1.

        Unlike BM25 this is absolute: it means the same in a store of 1 memory or 100k,
        and words no memory has (gibberish) weigh in the total, so they lower it."""
        compiled = self._compile()
        own, window = compiled.coverage(tokenize(query))
        return compiled.ids, own, window

    def positions(self) -> dict[str, int]:
        """Where each memory id sits in the arrays ``scores`` returns."""
        return self._compile().position

    def strip_common(self, query: str) -> str:
        """The query without words found in most memories (names of the people talking,
        say), which pull a dense model toward everything and nothing."""
        if len(self) < MIN_DOCS_FOR_COMMON:
            return query
        compiled = self._compile()
        kept = [word for word in query.split()
                if not any(compiled.share(t) > COMMON_SHARE for t in tokenize(word))]
        return " ".join(kept) if kept else query

    def _compile(self) -> "_View":
        if self._view is None:
            self._view = _View(self._base, self._tail())
        return self._view

    def _tail(self) -> "_Compiled | None":
        """The delta compiled with the base's last memories before it, whose windows
        reach into the delta (they replace the base's), so that scores are exactly
        those of one index compiled over everything."""
        if not self._delta:
            return None
        context = min(2 * NEIGHBOUR_SPAN, self._base.n)
        shadowed = min(NEIGHBOUR_SPAN, self._base.n)
        return _Compiled.of(self._base.entries(self._base.n - context) + self._delta,
                            window_from=context - shadowed, own_from=context,
                            offset=self._base.n - context)

    # --- storage --------------------------------------------------------------------

    def save(self, path: Path, keys: "Unlocked", context: str) -> None:
        """Write what changed: the delta, or (after a fold, or to re-seal under a new
        key, or when the delta outgrew ``DELTA_MAX``) the base, the delta then removed."""
        key = keys.next or keys.current
        if (self._sealed_with not in (None, key.key_id) or len(self._delta) > DELTA_MAX
                or not path.exists()):
            self._fold()
        delta = delta_path(path)
        if self._base_dirty:
            # The old delta goes first: a crash before the new base is written leaves an
            # index that does not match the store (rebuilt), never a forgotten memory's words.
            delta.unlink(missing_ok=True)
            self._generation = secrets.token_hex(8)
            meta = {"v": INDEX_VERSION, "gen": self._generation}
            # The generation and size in the header too, for ``for_append`` (not secret:
            # a random token, and the count of memories the store shows anyway).
            write_atomic(path, seal_file(INDEX_FORMAT, INDEX_FILE_VERSION, key, PURPOSE,
                                         self._base.pack(meta), context,
                                         {"gen": self._generation, "n": self._base.n}))
        if self._delta:
            rows = [[e.id, e.thread, " ".join(e.tokens)] for e in self._delta]
            payload = zlib.compress(json.dumps(
                {"v": INDEX_VERSION, "base": self._generation, "entries": rows},
                separators=(",", ":")).encode(), 6)
            write_atomic(delta, seal_file(DELTA_FORMAT, DELTA_FILE_VERSION, key, PURPOSE,
                                          payload, context + "/delta"))
        else:
            delta.unlink(missing_ok=True)
        self._base_dirty = self._delta_dirty = False
        self._sealed_with = key.key_id

    @classmethod
    def load(cls, path: Path, keys: "Unlocked", context: str) -> "KeywordIndex | None":
        """The saved index, or None if there is none or it cannot be used (rebuild then).
        A file of the previous format (version 2) is read, and rewritten at the next save."""
        try:
            blob = map_file(path)
        except FileNotFoundError:
            return None
        try:
            key_id, payload = open_file(path, blob, INDEX_FORMAT, INDEX_FILE_VERSION, keys,
                                        PURPOSE, context)
            if _header_version(blob) < INDEX_FILE_VERSION:
                return cls._from_entries_file(zlib.decompress(payload), key_id)
            meta, arrays, strings = _unpack(payload)
            if not _current(meta):
                return None  # tokenized by an older rule: rebuilt from the memories
            index = cls.__new__(cls)
            index._base = _Compiled.from_saved(arrays, strings)
            index._generation, index._sealed_with = str(meta["gen"]), key_id
            index._base_dirty, index._view = False, None
            return index._with_delta(delta_path(path), keys, context)
        except (IntegrityError, zlib.error, ValueError, KeyError, TypeError, IndexError):
            return None  # damaged: it is only a cache

    @classmethod
    def for_append(cls, path: Path, keys: "Unlocked", context: str,
                   adding: int) -> "KeywordIndex | None":
        """The saved index opened only to add ``adding`` memories to its delta: the base
        is not unsealed (its size and generation are read from its header), so adding
        costs the delta's size, not the store's. None when the add would fold the delta
        into the base, or the files need re-sealing or migrating: load it whole then."""
        head = read_header(path)
        if head is None:
            return None  # none, an older format, or damaged: for ``load`` to judge
        try:
            size, generation = int(head["n"]), str(head["gen"])
            key_id = str(head["key_id"])
        except (ValueError, KeyError, TypeError):
            return None
        if int(head.get("version", 0)) != INDEX_FILE_VERSION or \
                key_id != (keys.next or keys.current).key_id:
            return None
        try:
            index = _Appending(size, generation, key_id)._with_delta(delta_path(path), keys,
                                                                      context)
        except (IntegrityError, zlib.error, ValueError, KeyError, TypeError):
            return None  # a damaged delta: for ``load`` to judge (the index is rebuilt)
        if index is None or len(index._delta) + adding > DELTA_MAX:
            return None
        return index

    @classmethod
    def _from_entries_file(cls, raw: bytes, key_id: str) -> "KeywordIndex | None":
        """An index of format version 2 (JSON entries, one file), to migrate."""
        doc = json.loads(raw)
        if not _current(doc):
            return None
        index = cls([Entry(i, t, toks.split()) for i, t, toks in doc["entries"]])
        index._sealed_with = key_id
        return index

    def _with_delta(self, path: Path, keys: "Unlocked", context: str) -> "KeywordIndex | None":
        """This base with its delta read from ``path``; None if the delta belongs to
        another base or is damaged."""
        self._delta, self._delta_dirty = [], False
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return self
        key_id, payload = open_file(path, blob, DELTA_FORMAT, DELTA_FILE_VERSION, keys,
                                    PURPOSE, context + "/delta")
        doc = json.loads(zlib.decompress(payload))
        if not _current(doc) or doc.get("base") != self._generation:
            return None
        self._delta = [Entry(i, t, toks.split()) for i, t, toks in doc["entries"]]
        self._delta_dirty = key_id != self._sealed_with  # one file sealed under an older key
        return self


class _Appending(KeywordIndex):
    """A saved index opened to add memories only (``KeywordIndex.for_append``): it knows
    its base's size and generation, not its contents, so it can neither answer a query
    nor fold its delta into the base."""

    partial = True

    def __init__(self, base_size: int, generation: str, key_id: str) -> None:
        super().__init__()
        self._base_size, self._generation, self._sealed_with = base_size, generation, key_id
        self._base_dirty = False

    def __len__(self) -> int:
        return self._base_size + len(self._delta)

    def _fold(self, base: list[Entry] | None = None) -> None:
        raise AssertionError("internal: an index opened to append cannot fold")

    def _compile(self) -> "_View":
        raise AssertionError("internal: an index opened to append cannot answer queries")


def delta_path(path: Path) -> Path:
    """The delta file beside the base file ``path`` (paths.Paths.keyword_delta_file)."""
    return path.with_name(path.name + DELTA_SUFFIX)


def identity(path: Path) -> tuple[tuple[int, int, int] | None, ...] | None:
    """What changes whenever the saved index (base or delta) is replaced; None if there is
    no base. Files are replaced whole, never changed in place, so a new one is seen."""
    base = file_identity(path)
    return None if base is None else (base, file_identity(delta_path(path)))


def _current(doc: dict[str, Any]) -> bool:
    """Whether a saved index was tokenized by today's rule; raises for a later one."""
    version = int(doc.get("v", 0))
    if version > INDEX_VERSION:
        raise VersionError("the keyword index was written by a later memos: upgrade memos")
    return version == INDEX_VERSION


def _header_version(blob: bytes | mmap.mmap) -> int:
    if blob[:1] != b"{":
        return 1
    return int(json.loads(blob[:blob.find(b"\n")])["version"])  # (partition copies 35 MB)


# The arrays a base file holds, with the type each is stored as (all whole numbers:
# term weights are 1 and 2, so their sums are exact in float32). Not compressed:
# decompressing took longer than reading and unsealing the bigger file.
_STORED = {"counts": "<i4", "terms": "<i4", "thread_codes": "<i4", "lengths": "<f4",
           "post_docs": "<i4", "post_tf": "<f4", "ptr": "<i8", "own_df": "<i8",
           "own_docs": "<i4", "own_ptr": "<i8"}
_TEXTS = ("ids", "vocab", "thread_names")  # lists of strings, none holding a newline
_COMPUTED = {"lengths": np.float64}  # widened again when loaded (post_tf: per query)


def _pack(meta: dict[str, Any], arrays: dict[str, np.ndarray],
          texts: dict[str, list[str]]) -> bytes:
    parts, layout = [], []
    for name, dtype in _STORED.items():
        raw = np.ascontiguousarray(arrays[name], dtype=dtype).tobytes()
        layout.append([name, len(raw), 0])
        parts.append(raw)
    for name in _TEXTS:
        raw = "\n".join(texts[name]).encode()
        layout.append([name, len(raw), len(texts[name])])
        parts.append(raw)
    head = json.dumps({**meta, "layout": layout}).encode()
    return len(head).to_bytes(4, "big") + head + b"".join(parts)


def _unpack(raw: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, list[str]]]:
    size = int.from_bytes(raw[:4], "big")
    meta = json.loads(raw[4:4 + size])
    arrays: dict[str, np.ndarray] = {}
    texts: dict[str, list[str]] = {}
    view, at = memoryview(raw), 4 + size  # arrays read in place, not copied
    for name, length, count in meta["layout"]:
        chunk = view[at:at + length]
        if len(chunk) != length:
            raise ValueError("truncated keyword index")
        at += length
        if name in _STORED:
            array = np.frombuffer(chunk, dtype=_STORED[name])
            arrays[name] = array.astype(_COMPUTED[name]) if name in _COMPUTED else array
        elif name in _TEXTS:
            texts[name] = str(chunk, "utf-8").split("\n") if count else []
    return meta, arrays, texts


class _Compiled:
    """One segment's postings in compressed-sparse form, built with numpy, and its
    entries as arrays (term numbers per memory), to save and to rebuild entries from.

    A segment compiled after others (a delta) carries ``offset``: its memories' numbers
    in the whole index. Its first ``own_from`` entries are context (the base's last),
    lending their words to their neighbours' windows; their own windows count from
    ``window_from`` on (they replace the base's), their own words not at all."""

    def __init__(self, arrays: dict[str, np.ndarray], texts: dict[str, list[str]],
                 offset: int = 0, window_from: int = 0, own_from: int = 0) -> None:
        self.ids, self.vocab = texts["ids"], texts["vocab"]
        self.thread_names = texts["thread_names"]
        self.counts, self.terms = arrays["counts"], arrays["terms"]
        self.thread_codes, self.lengths = arrays["thread_codes"], arrays["lengths"]
        self.post_docs, self.post_tf, self.ptr = arrays["post_docs"], arrays["post_tf"], arrays["ptr"]
        self.own_df, self.own_docs, self.own_ptr = (arrays["own_df"], arrays["own_docs"],
                                                    arrays["own_ptr"])
        self.n, self.offset = len(self.ids), offset
        self.window_from, self.own_from = window_from, own_from
        self.index = {token: n for n, token in enumerate(self.vocab)}
        self._position: dict[str, int] | None = None

    @classmethod
    def from_saved(cls, arrays: dict[str, np.ndarray], texts: dict[str, list[str]]) -> "_Compiled":
        return cls(arrays, texts)

    @classmethod
    def of(cls, entries: Sequence[Entry], window_from: int = 0, own_from: int = 0,
           offset: int = 0) -> "_Compiled":
        vocab: dict[str, int] = {}
        threads: dict[str, int] = {}
        counts = np.array([len(e.tokens) for e in entries], dtype=np.int64)
        terms = np.array([vocab.setdefault(t, len(vocab)) for e in entries for t in e.tokens],
                         dtype=np.int64)
        codes = np.array([threads.setdefault(e.thread, len(threads)) for e in entries],
                         dtype=np.int64)
        own_docs = np.repeat(np.arange(len(entries), dtype=np.int64), counts)
        width = max(len(vocab), 1)
        docs, pair_terms, weights = _window_pairs(codes, own_docs, terms)
        kept = docs >= window_from
        docs, pair_terms, weights = docs[kept], pair_terms[kept], weights[kept]
        keys, inverse = np.unique(docs * width + pair_terms, return_inverse=True)
        tf = np.bincount(inverse.ravel(), weights=weights)
        order = np.argsort(keys % width, kind="stable")
        own = own_docs >= own_from
        unique_own = np.unique(own_docs[own] * width + terms[own])
        own_df = np.bincount(unique_own % width, minlength=width)
        by_term = np.argsort(unique_own % width, kind="stable")  # own words' postings
        arrays = {
            "counts": counts, "terms": terms, "thread_codes": codes,
            "lengths": np.bincount(docs, weights=weights, minlength=len(entries))[window_from:],
            "post_docs": (keys // width)[order] + offset, "post_tf": tf[order],
            "ptr": np.concatenate([[0], np.cumsum(np.bincount(keys % width, minlength=width))]),
            "own_df": own_df, "own_docs": (unique_own // width)[by_term] + offset,
            "own_ptr": np.concatenate([[0], np.cumsum(own_df)])}
        texts = {"ids": [e.id for e in entries], "vocab": list(vocab),
                 "thread_names": list(threads)}
        return cls(arrays, texts, offset, window_from, own_from)

    def pack(self, meta: dict[str, Any]) -> bytes:
        arrays = {name: getattr(self, name) for name in _STORED}
        texts = {"ids": self.ids, "vocab": self.vocab, "thread_names": self.thread_names}
        return _pack(meta, arrays, texts)

    @property
    def position(self) -> dict[str, int]:
        if self._position is None:
            self._position = {memory_id: n for n, memory_id in enumerate(self.ids)}
        return self._position

    def entries(self, start: int = 0) -> list[Entry]:
        """Entries ``start`` to the end, rebuilt from the arrays."""
        bounds = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        words = [self.vocab[t] for t in self.terms[bounds[start]:].tolist()]
        out, at = [], 0
        for n in range(start, self.n):
            count = int(self.counts[n])
            out.append(Entry(self.ids[n], self.thread_names[int(self.thread_codes[n])],
                             words[at:at + count]))
            at += count
        return out

    def window(self, token: str, below: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(docs, tf) of ``token``'s window postings, for docs numbered below ``below``."""
        index = self.index.get(token)
        if index is None:
            return None
        start, end = int(self.ptr[index]), int(self.ptr[index + 1])
        docs = self.post_docs[start:end]
        cut = int(np.searchsorted(docs, below))  # a term's postings are in doc order
        return docs[:cut], self.post_tf[start:start + cut].astype(np.float64)

    def own(self, token: str) -> np.ndarray | None:
        index = self.index.get(token)
        if index is None:
            return None
        return self.own_docs[self.own_ptr[index]:self.own_ptr[index + 1]]


class _View:
    """A base and its compiled delta scored as one index (see ``KeywordIndex._tail``)."""

    def __init__(self, base: _Compiled, tail: _Compiled | None) -> None:
        self.parts = [base] if tail is None else [base, tail]
        # The base's windows count below ``cut``; the tail's from there on.
        self.cut = base.n if tail is None else tail.offset + tail.window_from
        self.ids = base.ids if tail is None else base.ids + tail.ids[tail.own_from:]
        self.n = len(self.ids)
        self.lengths = base.lengths if tail is None else np.concatenate(
            [base.lengths[:self.cut], tail.lengths])
        self.avg = float(self.lengths.mean()) if self.n else 0.0
        self._position = base.position if tail is None else None

    @property
    def position(self) -> dict[str, int]:
        if self._position is None:
            self._position = {memory_id: n for n, memory_id in enumerate(self.ids)}
        return self._position

    def _window(self, token: str) -> tuple[np.ndarray, np.ndarray] | None:
        found = [got for got in (part.window(token, self.cut if part is self.parts[0]
                                             else self.n) for part in self.parts)
                 if got is not None]
        if not found:
            return None
        if len(found) == 1:
            return found[0]
        return np.concatenate([d for d, _ in found]), np.concatenate([t for _, t in found])

    def _own(self, token: str) -> np.ndarray | None:
        found = [docs for docs in (part.own(token) for part in self.parts) if docs is not None]
        if not found:
            return None
        return found[0] if len(found) == 1 else np.concatenate(found)

    def share(self, token: str) -> float:
        docs = self._own(token)
        return 0.0 if docs is None or not self.n else len(docs) / self.n

    def _idf(self, df: int) -> float:
        return math.log(1 + (self.n - df + 0.5) / (df + 0.5))

    def coverage(self, query_tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(own, window): per memory, the IDF share of the query in its own words, and
        in its whole window (own and neighbours')."""
        own, window, total = np.zeros(self.n), np.zeros(self.n), 0.0
        for token in set(query_tokens):
            own_docs = self._own(token)
            if own_docs is None:
                total += self._idf(0)
                continue
            idf = self._idf(len(own_docs))  # rarity among memories themselves
            total += idf
            found = self._window(token)
            if found is not None:
                window[found[0]] += idf
            own[own_docs] += idf
        return (own / total, window / total) if total else (own, window)

    def bm25(self, query_tokens: list[str]) -> np.ndarray:
        scores = np.zeros(self.n)
        for token in set(query_tokens):
            found = self._window(token)
            if found is None:
                continue
            docs, tf = found
            idf = self._idf(len(docs))
            norm = K1 * (1 - B + B * self.lengths[docs] / self.avg)
            scores[docs] += idf * tf * (K1 + 1) / (tf + norm)
        return scores


def _window_pairs(thread: np.ndarray, own_docs: np.ndarray, own_terms: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(doc, term, weight) triples: own words twice, thread neighbours' words once."""
    docs, terms = [own_docs], [own_terms]
    weights = [np.full(len(own_docs), float(SELF_WEIGHT))]
    for offset in range(-NEIGHBOUR_SPAN, NEIGHBOUR_SPAN + 1):
        if offset == 0 or not len(own_docs):
            continue
        # Doc d lends its words to doc d - offset when both are in the same thread.
        target = own_docs - offset
        inside = (target >= 0) & (target < len(thread))
        same = np.zeros(len(own_docs), dtype=bool)
        same[inside] = thread[target[inside]] == thread[own_docs[inside]]
        docs.append(target[same])
        terms.append(own_terms[same])
        weights.append(np.ones(int(same.sum())))
    return np.concatenate(docs), np.concatenate(terms), np.concatenate(weights)
