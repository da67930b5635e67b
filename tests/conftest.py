"""Hermetic test setup: every test gets its own MEMOS_HOME, a weak KDF, no keyring, no network.

``cli`` runs the app in-process; ``cli_proc`` runs ``python -m memos_cli`` as a real
subprocess. Both share the test's MEMOS_HOME.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ENV_CLEAR = ("MEMOS_PASSPHRASE", "MEMOS_NEW_PASSPHRASE", "MEMOS_PROFILE", "MEMOS_EMBED_MODEL",
             "MEMOS_EMBED_BASE_URL", "MEMOS_EMBED_API_KEY", "OPENAI_API_KEY", "MEMOS_DEBUG",
             "MEMOS_LOCK_TIMEOUT")


@pytest.fixture(autouse=True)
def hermetic(tmp_path, monkeypatch):
    home = tmp_path / "home"
    for name in ENV_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MEMOS_HOME", str(home))
    monkeypatch.setenv("MEMOS_INSECURE_TEST_KDF", "1")  # test-only: cheap Argon2id
    monkeypatch.setenv("MEMOS_KEYRING", "0")  # never touch the real OS keyring
    monkeypatch.setenv("ANONYMIZED_TELEMETRY", "False")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("MEMOS_NO_AUTO_CONSOLIDATE", "1")  # tests that want it turn it on
    monkeypatch.setenv("MEMOS_NO_AGENT", "1")  # no resident agent outlives a test; test_agent's opt in
    _loopback_only(monkeypatch)
    from memos_cli.cli import app as app_module

    monkeypatch.setattr(app_module, "STATE", app_module.State())
    yield home
    if "chromadb" in sys.modules:
        # Chroma keeps a client per store folder for the life of the process, its files
        # open: ~11 descriptors per test's store, past select()'s limit of 1024 in a long
        # worker (pexpect then fails). Each test's stores are closed at its end.
        from memos_cli.core.store import ChromaStore

        ChromaStore.close_all()


def _loopback_only(monkeypatch) -> None:
    """Refuse any connection that is not to 127.0.0.0/8, ::1 or a Unix socket."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not (str(host).startswith("127.") or host in ("::1", "localhost")):
            raise OSError(f"tests may not reach the network ({host})")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def server(monkeypatch):
    """A real OpenAI-protocol server on 127.0.0.1 (fake_openai.py), configured as the model."""
    from fake_openai import FakeOpenAI

    fake = FakeOpenAI()
    monkeypatch.setenv("MEMOS_LLM_BASE_URL", fake.url)
    monkeypatch.setenv("MEMOS_LLM_MODEL", "tiny-chat")
    monkeypatch.setenv("MEMOS_LLM_API_KEY", "test-key")
    yield fake
    fake.close()


@pytest.fixture
def home(hermetic) -> Path:
    return hermetic


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli():
    """Run memos in-process: cli("recall", "x", input="...") -> Result."""
    from memos_cli.cli.app import invoke

    def run(*args: str, input: str | None = None) -> Result:
        out, err = io.StringIO(), io.StringIO()
        saved = sys.stdin, sys.stdout, sys.stderr
        sys.stdin, sys.stdout, sys.stderr = io.StringIO(input or ""), out, err
        try:
            code = invoke(list(args))
        finally:
            sys.stdin, sys.stdout, sys.stderr = saved
        return Result(int(code), out.getvalue(), err.getvalue())

    return run


@pytest.fixture
def cli_proc():
    """Run memos as a real subprocess with the test's environment."""

    def run(*args: str, input: str | None = None, env: dict | None = None,
            timeout: float = 120) -> Result:
        full_env = dict(os.environ, **(env or {}))
        proc = subprocess.run([sys.executable, "-m", "memos_cli", *args], input=input,
                              capture_output=True, text=True, env=full_env, timeout=timeout)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


class HashEmbedder:
    """A tiny deterministic bag-of-words embedder for tests of engine logic (not of meaning)."""

    model_id = "test-hash"
    dim = 32

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            out[row] /= np.linalg.norm(out[row]) or 1.0
        return out


@pytest.fixture
def engine_factory():
    from memos_cli.engine import MemoryEngine

    def make(profile=None, embedder=None, **kw):
        return MemoryEngine(profile, embedder=embedder or HashEmbedder(), **kw)

    return make


def all_bytes_under(path: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in sorted(path.rglob("*")) if p.is_file()]
