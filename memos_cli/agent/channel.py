"""One command's connection, as the resident agent sees it (see ``server.py``).

While the command runs, the process looks like the client's: its environment, and
standard streams whose bytes go to the client (stdout, stderr) or are asked of it
(stdin, in the sizes the command reads). Ctrl-C at the client, or the client leaving,
interrupts the command with a real SIGINT in the main thread, so that even a wait in a
system call ends, and the command stops as Ctrl-C stops it in-process.
"""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from memos_cli.agent import protocol as wire
from memos_cli.core import blas
from memos_cli.core.errors import ExitCode, UsageError


class Channel:
    """One command's connection as the agent sees it: standard streams that write to the
    client, a stdin and passphrases that ask it, and Ctrl-C from it."""

    def __init__(self, conn: socket.socket, request: dict[str, Any]) -> None:
        self.conn = conn
        self.request = request
        self._send_lock = threading.Lock()
        self._answers: queue.Queue[tuple[bytes, bytes] | None] = queue.Queue()
        self.interruptible = False  # whether Ctrl-C from the client stops the command now
        self._gone = False

    def run(self, invoke: Any, argv: list[str]) -> int:
        """``invoke(argv)`` (inside ``as_client``); its exit code. Ctrl-C at the client, or
        the client leaving, interrupts it."""
        threading.Thread(target=self._read_client, daemon=True).start()
        try:
            self.interruptible = True
            if self._gone:  # the client left while the command waited its turn
                raise KeyboardInterrupt
            return int(invoke(argv))
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else ExitCode.ERROR
        except KeyboardInterrupt:
            print("memos: interrupted", file=sys.stderr, flush=True)
            return ExitCode.INTERRUPTED
        finally:
            self.interruptible = False

    def done(self, outcome: dict[str, Any]) -> None:
        try:
            with self._send_lock:
                wire.send_json(self.conn, wire.DONE, outcome)
        except OSError:
            pass  # the client left: nobody to tell

    def send(self, kind: bytes, data: bytes) -> None:
        with self._send_lock:
            if self._gone:
                raise BrokenPipeError("the client has gone")
            try:
                wire.send(self.conn, kind, data)
            except OSError:
                self._gone = True
                raise BrokenPipeError("the client has gone") from None

    def ask(self, question: dict[str, Any]) -> bytes:
        """Ask the client; its answer's payload (``EOFError`` if it left meanwhile)."""
        self.send(wire.QUESTION, json.dumps(question).encode("utf-8"))
        answer = self._answers.get()
        if answer is None:
            raise EOFError("the client has gone")
        return answer[1]

    def passphrase(self, prompt: str, new: bool) -> str | None:
        answer = wire.decode(self.ask({"ask": "passphrase", "prompt": prompt, "new": new}))
        if "error" in answer:
            raise UsageError(answer["error"])
        return answer["value"]

    def _read_client(self) -> None:
        """Answers go to the waiting command; Ctrl-C or a client that left stops it."""
        while True:
            try:
                kind, payload = wire.receive(self.conn)
            except (EOFError, OSError):
                self._gone = True
                self._answers.put(None)
                self._interrupt()
                return
            if kind == wire.INTERRUPT:
                self._interrupt()
            else:
                self._answers.put((kind, payload))

    def _interrupt(self) -> None:
        """Stop the command as Ctrl-C stops it in-process (writes roll back whole). A real
        signal, so that a wait in a system call is interrupted too."""
        if self.interruptible:
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    @contextmanager
    def as_client(self) -> Iterator[None]:
        """The process looks like the client's for the command: its environment (the
        time zone included) and its standard streams."""
        saved_env, saved_streams = dict(os.environ), (sys.stdin, sys.stdout, sys.stderr)
        os.environ.clear()
        os.environ.update(self.request["env"])
        blas.one_thread(os.environ)  # as __main__ does: numpy may be imported now
        time.tzset()
        sys.stdin, sys.stdout, sys.stderr = self._streams()
        try:
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass  # the client has gone
            sys.stdin, sys.stdout, sys.stderr = saved_streams
            os.environ.clear()
            os.environ.update(saved_env)
            time.tzset()

    def _streams(self) -> tuple[io.TextIOWrapper, io.TextIOWrapper, io.TextIOWrapper]:
        tty_in, tty_out, tty_err = self.request["tty"]
        (in_enc, in_err), (out_enc, out_err), (err_enc, err_err) = self.request["encodings"]
        stdin = io.TextIOWrapper(io.BufferedReader(_FromClient(self, tty_in), 1 << 16),
                                 encoding=in_enc, errors=in_err)
        stdout = io.TextIOWrapper(io.BufferedWriter(_ToClient(self, wire.STDOUT, tty_out), 1 << 16),
                                  encoding=out_enc, errors=out_err, line_buffering=tty_out)
        stderr = io.TextIOWrapper(io.BufferedWriter(_ToClient(self, wire.STDERR, tty_err), 1 << 16),
                                  encoding=err_enc, errors=err_err, line_buffering=True,
                                  write_through=True)
        return stdin, stdout, stderr


class _ToClient(io.RawIOBase):
    """A standard output stream whose bytes go to the client."""

    def __init__(self, channel: Channel, kind: bytes, tty: bool) -> None:
        self.channel, self.kind, self.tty = channel, kind, tty

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.tty

    def write(self, data: Any) -> int:
        self.channel.send(self.kind, bytes(data))
        return len(data)


class _FromClient(io.RawIOBase):
    """Standard input read from the client, as much as one read of its stdin gives."""

    def __init__(self, channel: Channel, tty: bool) -> None:
        self.channel, self.tty = channel, tty

    def readable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.tty

    def readinto(self, buffer: Any) -> int:
        data = self.channel.ask({"ask": "stdin", "size": len(buffer)})
        buffer[:len(data)] = data
        return len(data)
