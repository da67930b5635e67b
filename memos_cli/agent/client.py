"""The client side of a command that the resident agent runs (see ``server.py``).

``run(argv)`` hands the command line, the environment and the facts about the
terminal to the agent, starting one if none is running, then relays what comes back:
output to stdout and stderr byte for byte, and the agent's questions (a passphrase,
stdin) answered from this process, which owns the terminal. It returns None when the
command should run in this process instead: ``MEMOS_NO_AGENT=1``, ``--no-agent``,
``agent.ttl = 0``, help, a command that is not the agent's, or no agent to be had.

This module and what it imports are the whole cost of a command sent to the agent, so
it uses the standard library only: never chromadb, numpy, onnxruntime, Typer or rich.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from memos_cli.agent import protocol as wire
from memos_cli.core.errors import ExitCode, MemosError
from memos_cli.core.paths import resolve_paths

# Commands that only read and write memories. The others (chat, key administration,
# backups, config, mcp) run in-process: they need the terminal, or change what the
# agent holds.
AGENT_COMMANDS = frozenset({"remember", "recall", "list", "show", "update", "forget", "stats",
                            "export", "import", "audit"})
_GLOBAL_WITH_VALUE = frozenset({"--profile", "-p", "--store"})
_IN_PROCESS_FLAGS = frozenset({"--no-agent", "--help", "-h", "--version"})
START_TIMEOUT_S = 20.0  # a first start imports chromadb and may wait for a busy disk
_MISMATCH = "mismatch"


def run(argv: list[str]) -> int | None:
    """Run ``argv`` (without the program name) in the agent and return its exit code,
    or None to run it in this process."""
    if os.environ.get("MEMOS_NO_AGENT") == "1" or not wants_agent(argv):
        return None
    for _attempt in range(2):  # a second time after replacing an agent of another build
        reached = _reach_agent()
        if reached is None:
            return None
        sock, path = reached
        outcome = _Command(sock, argv).run()
        if outcome != _MISMATCH:
            return outcome  # type: ignore[return-value]
        _wait_until_gone(path)  # the other build's agent has quit: start ours
    return None


def _reach_agent() -> tuple[socket.socket, Path] | None:
    """A connection to this installation's agent (started if allowed) and its socket;
    None when there is no agent to be had. A running agent reads the settings itself:
    the config file is read here only to decide whether to start one."""
    try:
        if not wire.peer_check_supported():
            return None
        paths = resolve_paths()
        path = wire.socket_path(paths)
        sock = connect(path)
        if sock is None:
            from memos_cli.core.config import agent_settings

            settings = agent_settings(paths)
            sock = start(path) if settings.autostart and settings.ttl > 0 else None
    except (MemosError, OSError):
        return None  # a broken config or runtime folder: the command runs here and says so
    return None if sock is None else (sock, path)


def wants_agent(argv: list[str]) -> bool:
    """Whether ``argv`` names an agent command, with only known global options before it."""
    if "_MEMOS_COMPLETE" in os.environ or any(arg in _IN_PROCESS_FLAGS for arg in argv):
        return False
    words = iter(argv)
    for word in words:
        if word in _GLOBAL_WITH_VALUE:
            next(words, None)
        elif word == "--debug" or word.startswith(("--profile=", "--store=")):
            continue
        else:
            return word in AGENT_COMMANDS
    return False


def connect(path: Path) -> socket.socket | None:
    """A connection to the agent at ``path``, or None when none is listening there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    return sock


def listening(path: Path) -> bool:
    """Whether an agent answers at ``path`` (the connection is closed again)."""
    sock = connect(path)
    if sock is not None:
        sock.close()
    return sock is not None


def start(path: Path) -> socket.socket | None:
    """Start the agent that listens at ``path`` and connect to it; None if it did not come up.
    One client starts it while the others wait on the start lock, then connect."""
    import subprocess

    with _start_lock(path):
        sock = connect(path)
        if sock is not None:
            return sock
        path.unlink(missing_ok=True)  # a killed agent's socket: nobody listens on it
        agent = subprocess.Popen(
            [sys.executable, "-m", "memos_cli.agent.server", str(path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, env=_agent_environment())
        deadline = time.monotonic() + START_TIMEOUT_S
        while agent.poll() is None and time.monotonic() < deadline:
            sock = connect(path)
            if sock is not None:
                return sock
            time.sleep(0.005)
    return None


def stop(path: Path) -> bool:
    """Ask the agent at ``path`` to quit; whether one was running."""
    status = control(path, "stop")
    if status is not None:
        _wait_until_gone(path)
    return status is not None


def control(path: Path, op: str) -> dict[str, Any] | None:
    """Send ``op`` ("status" or "stop"); the agent's answer, or None if none is running."""
    sock = connect(path)
    if sock is None:
        return None
    with sock:
        try:
            wire.send_json(sock, wire.CONTROL, {"op": op})
            kind, payload = wire.receive(sock)
        except (EOFError, ConnectionError):
            return None  # it died meanwhile, or refused us
    return wire.decode(payload) if kind == wire.STATUS else None


@contextmanager
def _start_lock(path: Path) -> Iterator[None]:
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _wait_until_gone(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while listening(path) and time.monotonic() < deadline:
        time.sleep(0.01)


def _agent_environment() -> dict[str, str]:
    """The agent's own environment: the client's, without secrets (each command brings
    its own environment, and the agent keeps it only while the command runs)."""
    return {name: value for name, value in os.environ.items()
            if not _secret_name(name) and not name.endswith("_FD")}


def _secret_name(name: str) -> bool:
    return "PASSPHRASE" in name or name.endswith(("API_KEY", "_TOKEN"))


class _StdinInterrupted(Exception):
    """Ctrl-C while reading our stdin for the agent (a confirmation prompt)."""


class _Command:
    """One command's conversation with the agent."""

    def __init__(self, sock: socket.socket, argv: list[str]) -> None:
        self.sock, self.argv = sock, argv
        self.interrupted = False
        self.reading_stdin = False  # a read of our terminal for the agent is under way

    def run(self) -> int | str | None:
        with self.sock:
            try:
                request = self._request()
            except (OSError, AttributeError):
                return None  # no working folder, or a closed standard stream: run it here
            wire.send_json(self.sock, wire.REQUEST, request)
            previous = signal.signal(signal.SIGINT, self._interrupt)
            try:
                return self._relay()
            except KeyboardInterrupt:
                print("memos: interrupted", file=sys.stderr, flush=True)
                return ExitCode.INTERRUPTED
            except OSError as exc:  # writing our own output failed (a full disk)
                print(f"memos: cannot write the output: {exc.strerror}", file=sys.stderr,
                      flush=True)
                return ExitCode.ERROR
            finally:
                signal.signal(signal.SIGINT, previous)

    def _request(self) -> dict[str, Any]:
        streams = (sys.stdin, sys.stdout, sys.stderr)
        return {"build": wire.build(), "argv": self.argv, "cwd": os.getcwd(),
                "env": _command_environment(),
                "tty": [os.isatty(fd) for fd in (0, 1, 2)],
                "encodings": [[s.encoding, s.errors] for s in streams]}

    def _interrupt(self, _signum: int, _frame: Any) -> None:
        """Ctrl-C: the agent stops the command as Ctrl-C stops one in-process; a second
        Ctrl-C leaves without waiting for it."""
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        try:
            wire.send(self.sock, wire.INTERRUPT)
        except OSError:
            raise KeyboardInterrupt from None
        if self.reading_stdin:
            raise _StdinInterrupted  # else the read resumes and waits for a line

    def _relay(self) -> int | str | None:
        while True:
            try:
                kind, payload = wire.receive(self.sock)
                if kind == wire.DONE:
                    done = wire.decode(payload)
                    return int(done["code"]) if "code" in done else (
                        _MISMATCH if "mismatch" in done else None)
                if not self._handle(kind, payload):
                    return ExitCode.OK  # our stdout was closed (memos list | head)
            except (EOFError, ConnectionError):
                print("memos: the agent stopped before the command finished "
                      "(see 'memos agent status'); what it changed is kept or rolled back "
                      "whole", file=sys.stderr, flush=True)
                return ExitCode.ERROR

    def _handle(self, kind: bytes, payload: bytes) -> bool:
        if kind == wire.STDOUT:
            return _write(sys.stdout, payload)
        if kind == wire.STDERR:
            _write(sys.stderr, payload)
        elif kind == wire.QUESTION:
            self._answer(wire.decode(payload))
        return True

    def _answer(self, question: dict[str, Any]) -> None:
        if question["ask"] == "stdin":
            self.reading_stdin = True
            try:
                # After a Ctrl-C the agent is stopping the command: a question that
                # crossed it on the way gets the end of input, not a wait for a line.
                data = b"" if self.interrupted else _read_stdin(int(question["size"]))
            except _StdinInterrupted:
                data = b""  # the agent has the interrupt already; this ends its read
            finally:
                self.reading_stdin = False
            wire.send(self.sock, wire.STDIN, data)
            return
        from memos_cli.core import passphrase

        try:
            prompt = str(question["prompt"])
            value = (passphrase.profile_passphrase(prompt) if question.get("new")
                     else passphrase.ask("MEMOS_PASSPHRASE", prompt))
            answer: dict[str, Any] = {"value": value}
        except MemosError as exc:
            answer = {"error": str(exc), "code": int(exc.exit_code)}
        wire.send_json(self.sock, wire.ANSWER, answer)


def _command_environment() -> dict[str, str]:
    """The environment the command sees in the agent: ours, but a descriptor means
    nothing in another process (passphrases are asked back from here instead), and a
    terminal's size is given as rich reads it in-process."""
    env = {name: value for name, value in os.environ.items() if not name.endswith("_FD")}
    for fd in (0, 1, 2):
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        env.setdefault("COLUMNS", str(size.columns))
        env.setdefault("LINES", str(size.lines))
        break
    return env


def _write(stream: Any, data: bytes) -> bool:
    """Write to our stdout or stderr; False when its reader has gone."""
    try:
        stream.buffer.write(data)
        stream.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())  # no second complaint at exit
        return False
    return True


def _read_stdin(size: int) -> bytes:
    try:
        return os.read(0, max(1, min(size, 1 << 20)))
    except OSError:
        return b""
