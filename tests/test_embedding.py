"""Embedding models: the built-in MiniLM (meaning, padding, integrity) and an OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from memos_cli.search import embedding
from memos_cli.search.embedding import LocalMiniLM, OpenAIEmbedder, make_embedder
from memos_cli.core.errors import IntegrityError, ModelError


@pytest.fixture(scope="module")
def minilm() -> LocalMiniLM:
    return LocalMiniLM()


def test_similar_sentences_are_closer_than_unrelated_ones(minilm):
    cat, cat2, tax = minilm.embed(["The cat sits on the mat", "A cat is sitting on a mat",
                                   "Quarterly tax filing deadline"])
    assert cat @ cat2 > 0.8 and cat @ tax < 0.3


def test_rows_are_unit_length_float32(minilm):
    vectors = minilm.embed(["one", "two words", "ünïcödé 🙂 and 中文"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_batching_and_padding_do_not_change_a_vector(minilm):
    texts = [f"memory {n} " + "with a longer tail " * (n % 7) for n in range(40)]
    together = minilm.embed(texts)
    alone = np.vstack([minilm.embed([t]) for t in texts])
    assert np.abs(together - alone).max() < 1e-4


def test_identical_texts_identical_vectors_and_empty_input(minilm):
    a, b = minilm.embed(["same text", "same text"])
    assert np.array_equal(a, b)
    assert minilm.embed([]).shape == (0, 384)


def test_very_long_text_is_truncated_not_an_error(minilm):
    assert minilm.embed(["word " * 5000]).shape == (1, 384)


def test_a_model_file_with_the_wrong_hash_is_refused(monkeypatch):
    monkeypatch.setattr(embedding, "MODEL_SHA256", "0" * 64)
    with pytest.raises(IntegrityError, match="sha256"):
        LocalMiniLM().embed(["x"])


def test_a_model_loaded_in_the_background_gives_the_same_vectors(minilm):
    """prepare() loads the model in a thread (a cold command imports Chroma meanwhile)."""
    texts = ["where does my sister live", "My sister Ana lives in Lisbon"]
    early = LocalMiniLM()
    early.prepare()
    loader = early._loader
    assert loader is not None and loader.name == "memos-model-load"
    early.prepare()  # a second call starts nothing more
    assert early._loader is loader
    assert np.abs(early.embed(texts) - minilm.embed(texts)).max() < 1e-6
    assert not loader.is_alive() and early._loader is None


def test_a_background_load_that_fails_fails_the_embed_that_waits_on_it(monkeypatch):
    monkeypatch.setattr(embedding, "MODEL_SHA256", "0" * 64)
    model = LocalMiniLM()
    model.prepare()
    with pytest.raises(IntegrityError, match="sha256"):
        model.embed(["x"])
    with pytest.raises(IntegrityError, match="sha256"):  # and again: nothing half-loaded
        model.embed(["x"])


def test_importing_the_module_loads_no_heavy_library():
    code = ("import sys, memos_cli.search.embedding\n"
            "print([m for m in ('onnxruntime', 'tokenizers', 'openai') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]"


def test_unknown_model_spec_is_a_model_error():
    with pytest.raises(ModelError, match="unknown embedding model"):
        make_embedder("word2vec")
    assert make_embedder("local").model_id == "all-MiniLM-L6-v2-int8"
    assert make_embedder("openai:nomic-embed-text").model_id == "openai:nomic-embed-text"


class EmbeddingsServer(BaseHTTPRequestHandler):
    """Speaks OpenAI's /v1/embeddings: deterministic vectors, items deliberately out of order."""

    requests: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        EmbeddingsServer.requests.append(body)
        if self.headers.get("Authorization") != "Bearer good-key":
            return self._reply(401, {"error": {"message": "bad key", "type": "auth"}})
        if body["model"] != "tiny-embed":
            return self._reply(404, {"error": {"message": "no such model"}})
        data = [{"object": "embedding", "index": i,
                 "embedding": [float(len(text)), float(i + 1), 1.0]}
                for i, text in enumerate(body["input"])]
        self._reply(200, {"object": "list", "data": list(reversed(data)), "model": body["model"],
                          "usage": {"prompt_tokens": 1, "total_tokens": 1}})

    def _reply(self, status, payload):
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), EmbeddingsServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_openai_endpoint_vectors_come_back_in_input_order(endpoint):
    embedder = OpenAIEmbedder("tiny-embed", endpoint, "good-key", timeout=5)
    vectors = embedder.embed(["a", "bbb", "cc"])
    expected = np.array([[1, 1, 1], [3, 2, 1], [2, 3, 1]], dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(vectors, expected) and embedder.dim == 3


def test_openai_endpoint_batches_large_inputs(endpoint):
    EmbeddingsServer.requests.clear()
    embedder = OpenAIEmbedder("tiny-embed", endpoint, "good-key", timeout=5)
    assert embedder.embed([f"t{n}" for n in range(600)]).shape == (600, 3)
    assert [len(r["input"]) for r in EmbeddingsServer.requests] == [256, 256, 88]


@pytest.mark.parametrize("model,key,message", [
    ("tiny-embed", "bad-key", "rejected the API key"),
    ("missing-model", "good-key", "does not know"),
])
def test_openai_endpoint_errors_are_one_line_model_errors(endpoint, model, key, message):
    with pytest.raises(ModelError, match=message):
        OpenAIEmbedder(model, endpoint, key, timeout=5).embed(["x"])


def test_unreachable_endpoint_is_a_model_error():
    with pytest.raises(ModelError, match="cannot reach"):
        OpenAIEmbedder("tiny-embed", "http://127.0.0.1:9/v1", "k", timeout=2).embed(["x"])


def test_a_store_on_an_endpoint_model_works_end_to_end(endpoint, monkeypatch, cli):
    monkeypatch.setenv("MEMOS_EMBED_MODEL", "openai:tiny-embed")
    monkeypatch.setenv("MEMOS_EMBED_BASE_URL", endpoint)
    monkeypatch.setenv("MEMOS_EMBED_API_KEY", "good-key")
    assert cli("remember", "stored with a remote embedding model").code == 0
    stats = json.loads(cli("stats", "--json").out)
    assert stats["embedding_model"] == "openai:tiny-embed" and stats["embedding_dim"] == 3
    monkeypatch.delenv("MEMOS_EMBED_MODEL")
    mismatch = cli("list")
    assert mismatch.code == 1 and "reindex" in mismatch.err


def test_recall_embeds_the_query_with_embed_query_where_the_embedder_has_one(engine_factory):
    from conftest import HashEmbedder
    from memos_cli.engine import NewMemory

    class Asymmetric(HashEmbedder):
        """Stores texts as they are; a query's vector is that of its stored form."""

        def __init__(self):
            self.queries = []

        def embed_query(self, texts):
            self.queries.extend(texts)
            return self.embed([f"stored form of {t}" for t in texts])

    embedder = Asymmetric()
    engine = engine_factory(embedder=embedder)
    engine.remember(NewMemory("the heron nests by the river"))
    hits = engine.recall("heron river", limit=1, floor=0.0)
    assert hits and hits[0].memory.text == "the heron nests by the river"
    assert any("heron" in q for q in embedder.queries)
