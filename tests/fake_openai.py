"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat protocol, for tests.

It serves /v1/models and /v1/chat/completions (whole replies and server-sent-event
streams) from scripted queues, and can fail on purpose: an HTTP status, a delay past
the client's timeout, a body that is not JSON, a context-length refusal. The real
``openai`` client talks to it; nothing is patched.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NONE_OPS = '{"operations": [{"op": "NONE"}]}'


class FakeOpenAI:
    def __init__(self) -> None:
        self.answers: list[Any] = []  # str or callable(request body) -> str
        self.extractions: list[Any] = []  # replies to requests that ask for JSON
        self.failures: list[dict] = []  # {"status": 401} / {"delay": s} / {"raw": "..."} / {"context": True}
        self.requests: list[dict] = []
        self.chunk_delay = 0.0
        self.server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer_requests(self) -> list[dict]:
        return [r for r in self.requests if "response_format" not in r]

    def next_content(self, body: dict) -> str:
        queue = self.extractions if "response_format" in body else self.answers
        default = NONE_OPS if "response_format" in body else "OK."
        item = queue.pop(0) if queue else default
        return item(body) if callable(item) else item


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up (retries, Ctrl-C) is expected here


def _handler(fake: FakeOpenAI) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._json(200, {"object": "list", "data": [
                    {"id": name, "object": "model", "created": 0, "owned_by": "test"}
                    for name in ("tiny-chat", "tiny-embed")]})
            else:
                self._json(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            fake.requests.append(body)
            if fake.failures and self._fail(fake.failures.pop(0)):
                return
            if body.get("model") != "tiny-chat":
                self._json(404, {"error": {"message": f"model {body.get('model')} not found",
                                           "code": "model_not_found"}})
                return
            content = fake.next_content(body)
            if body.get("stream"):
                self._stream(content)
            else:
                self._json(200, {"id": "cmpl-1", "object": "chat.completion", "created": 0,
                                 "model": "tiny-chat", "choices": [{
                                     "index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": content}}],
                                 "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                           "total_tokens": 2}})

        def _fail(self, failure: dict) -> bool:
            if "delay" in failure:
                time.sleep(failure["delay"])
                return False
            if "raw" in failure:
                self._send(200, failure["raw"].encode(), "application/json")
            elif failure.get("context"):
                self._json(400, {"error": {"message": "This model's maximum context length "
                                           "is 8 tokens", "code": "context_length_exceeded"}})
            else:
                self._json(failure["status"], {"error": {"message": "scripted failure"}})
            return True

        def _stream(self, content: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            words = content.split(" ")
            for n, word in enumerate(words):
                piece = word if n == len(words) - 1 else word + " "
                self._event({"choices": [{"index": 0, "delta": {"content": piece},
                                          "finish_reason": None}]})
                time.sleep(fake.chunk_delay)
            self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")

        def _event(self, payload: dict) -> None:
            payload = {"id": "cmpl-1", "object": "chat.completion.chunk", "created": 0,
                       "model": "tiny-chat", **payload}
            self._chunk(f"data: {json.dumps(payload)}\n\n".encode())

        def _chunk(self, data: bytes) -> None:
            try:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading (Ctrl-C): fine

        def _json(self, status: int, payload: dict) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json")

        def _send(self, status: int, raw: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    return Handler


def ops(*operations: dict) -> str:
    return json.dumps({"operations": list(operations)})


