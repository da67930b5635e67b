"""The keyword side of recall: BM25 over memories and their neighbours, kept sealed on disk.

Dense vectors miss exact words (names of places, products, rare nouns); BM25 finds
them. Each memory is scored as a small window: its own words count twice, and the
words of up to two memories recorded just before and after it in the same thread
(same occurred time, e.g. one conversation session, or one batch) count once,
because an answer often sits in the turn after the question that names the topic.

The index is derived data: it can always be rebuilt from the decrypted memories.
On disk it is one file per profile, compressed and sealed with a key derived from
the data key, so no word of any memory is ever written in plaintext.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from memos_cli.atomic import write_atomic
from memos_cli.errors import IntegrityError, VersionError
from memos_cli.sealed import open_file, seal_file

if TYPE_CHECKING:
    from memos_cli.keys import Unlocked

INDEX_VERSION = 2  # 2: hyphenated words also indexed whole
INDEX_FORMAT = "memos-keyword-index"
INDEX_FILE_VERSION = 2  # 1: a bare sealed blob, without the key id
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
    """BM25 over neighbour windows, for one profile; entries kept in storage order."""

    def __init__(self, entries: Sequence[Entry] = ()) -> None:
        self.entries: list[Entry] = list(entries)
        self._compiled: _Compiled | None = None

    def __len__(self) -> int:
        return len(self.entries)

    # --- changes ------------------------------------------------------------------

    def add(self, entries: Sequence[Entry]) -> None:
        self.entries.extend(entries)
        self._compiled = None

    def remove(self, ids: Sequence[str]) -> None:
        gone = set(ids)
        self.entries = [e for e in self.entries if e.id not in gone]
        self._compiled = None

    def replace(self, memory_id: str, tokens: list[str]) -> None:
        for entry in self.entries:
            if entry.id == memory_id:
                entry.tokens = tokens
        self._compiled = None

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
        if len(self.entries) < MIN_DOCS_FOR_COMMON:
            return query
        compiled = self._compile()
        kept = [word for word in query.split()
                if not any(compiled.share(t) > COMMON_SHARE for t in tokenize(word))]
        return " ".join(kept) if kept else query

    def _compile(self) -> "_Compiled":
        if self._compiled is None:
            self._compiled = _Compiled(self.entries)
        return self._compiled

    # --- storage --------------------------------------------------------------------

    def save(self, path: Path, keys: "Unlocked", context: str) -> None:
        rows = [[e.id, e.thread, " ".join(e.tokens)] for e in self.entries]
        payload = zlib.compress(json.dumps({"v": INDEX_VERSION, "entries": rows},
                                           separators=(",", ":")).encode(), 6)
        write_atomic(path, seal_file(INDEX_FORMAT, INDEX_FILE_VERSION, keys.next or keys.current,
                                     PURPOSE, payload, context))

    @classmethod
    def load(cls, path: Path, keys: "Unlocked", context: str) -> "KeywordIndex | None":
        """The saved index, or None if there is none or it cannot be used (rebuild then)."""
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            _key_id, payload = open_file(path, blob, INDEX_FORMAT, INDEX_FILE_VERSION, keys,
                                         PURPOSE, context)
            doc = json.loads(zlib.decompress(payload))
        except (IntegrityError, zlib.error, ValueError):
            return None  # damaged: it is only a cache
        if int(doc.get("v", 0)) > INDEX_VERSION:
            raise VersionError("the keyword index was written by a later memos: upgrade memos")
        if int(doc.get("v", 0)) < INDEX_VERSION:
            return None  # tokenized by an older rule: rebuilt from the memories
        return cls([Entry(i, t, toks.split()) for i, t, toks in doc["entries"]])


class _Compiled:
    """Postings in compressed-sparse form, built with numpy from the entries."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        vocab: dict[str, int] = {}
        self.ids = [e.id for e in entries]
        self.position = {memory_id: n for n, memory_id in enumerate(self.ids)}
        counts = np.array([len(e.tokens) for e in entries], dtype=np.int64)
        own_terms = np.array([vocab.setdefault(t, len(vocab)) for e in entries for t in e.tokens],
                             dtype=np.int64)
        own_docs = np.repeat(np.arange(len(entries), dtype=np.int64), counts)
        self.vocab, self.n = vocab, len(entries)
        width = max(len(vocab), 1)
        docs, terms, weights = _window_pairs(entries, own_docs, own_terms)
        keys, inverse = np.unique(docs * width + terms, return_inverse=True)
        tf = np.bincount(inverse, weights=weights)
        pair_docs, pair_terms = keys // width, keys % width
        self.lengths = np.bincount(docs, weights=weights, minlength=self.n)
        self.avg = float(self.lengths.mean()) if self.n else 0.0
        order = np.argsort(pair_terms, kind="stable")
        self.post_docs, self.post_tf = pair_docs[order], tf[order]
        self.ptr = np.concatenate([[0], np.cumsum(np.bincount(pair_terms, minlength=width))])
        unique_own = np.unique(own_docs * width + own_terms)
        self.own_df = np.bincount(unique_own % width, minlength=width)
        by_term = np.argsort(unique_own % width, kind="stable")  # own words' postings
        self.own_docs = (unique_own // width)[by_term]
        self.own_ptr = np.concatenate([[0], np.cumsum(self.own_df)])

    def share(self, token: str) -> float:
        index = self.vocab.get(token)
        return 0.0 if index is None or not self.n else float(self.own_df[index]) / self.n

    def _idf(self, df: int) -> float:
        return math.log(1 + (self.n - df + 0.5) / (df + 0.5))

    def coverage(self, query_tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(own, window): per memory, the IDF share of the query in its own words, and
        in its whole window (own and neighbours')."""
        own, window, total = np.zeros(self.n), np.zeros(self.n), 0.0
        for token in set(query_tokens):
            index = self.vocab.get(token)
            if index is None:
                total += self._idf(0)
                continue
            idf = self._idf(int(self.own_df[index]))  # rarity among memories themselves
            total += idf
            window[self.post_docs[self.ptr[index]:self.ptr[index + 1]]] += idf
            own[self.own_docs[self.own_ptr[index]:self.own_ptr[index + 1]]] += idf
        return (own / total, window / total) if total else (own, window)

    def bm25(self, query_tokens: list[str]) -> np.ndarray:
        scores = np.zeros(self.n)
        for token in set(query_tokens):
            index = self.vocab.get(token)
            if index is None:
                continue
            start, end = self.ptr[index], self.ptr[index + 1]
            docs, tf = self.post_docs[start:end], self.post_tf[start:end]
            idf = self._idf(int(end - start))
            norm = K1 * (1 - B + B * self.lengths[docs] / self.avg)
            scores[docs] += idf * tf * (K1 + 1) / (tf + norm)
        return scores


def _window_pairs(entries: Sequence[Entry], own_docs: np.ndarray, own_terms: np.ndarray):
    """(doc, term, weight) triples: own words twice, thread neighbours' words once."""
    thread_ids: dict[str, int] = {}
    thread = np.array([thread_ids.setdefault(e.thread, len(thread_ids)) for e in entries],
                      dtype=np.int64)
    docs, terms = [own_docs], [own_terms]
    weights = [np.full(len(own_docs), float(SELF_WEIGHT))]
    for offset in range(-NEIGHBOUR_SPAN, NEIGHBOUR_SPAN + 1):
        if offset == 0 or not len(own_docs):
            continue
        # Doc d lends its words to doc d - offset when both are in the same thread.
        target = own_docs - offset
        inside = (target >= 0) & (target < len(entries))
        same = np.zeros(len(own_docs), dtype=bool)
        same[inside] = thread[target[inside]] == thread[own_docs[inside]]
        docs.append(target[same])
        terms.append(own_terms[same])
        weights.append(np.ones(int(same.sum())))
    return np.concatenate(docs), np.concatenate(terms), np.concatenate(weights)
