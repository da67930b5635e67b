"""A real Chroma server (``chroma run``, from the chromadb package) on 127.0.0.1, for tests.

``chroma_server`` is one server for the whole session, however many test modules
import the fixture; ``ChromaServer`` starts a private one for tests that stop it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ChromaServer:
    def __init__(self, data: Path) -> None:
        self.data, self.port = data, free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ChromaServer":
        chroma = shutil.which("chroma")
        assert chroma, "the chroma CLI (from the chromadb package) is not on PATH"
        self.process = subprocess.Popen(
            [chroma, "run", "--path", str(self.data), "--host", "127.0.0.1",
             "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the Chroma server did not start within 60 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None

    def wipe(self) -> None:
        """Delete every collection, so the next test starts on an empty server."""
        import chromadb
        from chromadb.config import Settings

        client = chromadb.HttpClient(host="127.0.0.1", port=self.port,
                                     settings=Settings(anonymized_telemetry=False))
        for collection in client.list_collections():
            client.delete_collection(collection.name)


_SHARED: list[ChromaServer] = []


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory) -> Iterator[ChromaServer]:
    if not _SHARED:
        _SHARED.append(ChromaServer(tmp_path_factory.mktemp("chroma-server")).start())
    yield _SHARED[0]
    _SHARED[0].stop()  # each importing module's copy of this fixture ends at session end
