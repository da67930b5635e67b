"""The resident agent: one process per installation that keeps the unlocked key, the open
store, the keyword index and the embedding model between commands, as ssh-agent and
gpg-agent keep keys, and forgets them all by exiting when idle for ``agent.ttl``.

A command sent here (see ``client.py``) runs through the same Typer application
as in-process, with the client's arguments, environment, working folder and standard
streams: output goes back to the client byte for byte, stdin and passphrases are asked
of it. So a command's output is the same with the agent and without it. Commands run
one at a time, in the main thread (Ctrl-C at the client interrupts them there as it
would in-process); status and stop are answered beside them.

Every connection's peer uid is checked against the agent's own; others are refused and
counted. The agent writes nothing but its socket, and logs nothing.

    python -m memos_cli.agent.server SOCKET   (started by the client; see 'memos agent')
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from memos_cli.agent import protocol as wire
from memos_cli.core import blas
from memos_cli.agent.channel import Channel
from memos_cli.agent.client import listening
from memos_cli.core.atomic import file_identity
from memos_cli.core.config import AGENT_TTL, duration

GREETING_TIMEOUT_S = 10.0  # a connection that says nothing for this long is dropped


class Agent:
    """The agent's state: who may talk, what it has served, when it was last used."""

    def __init__(self, path: Path, *, uid: int | None = None) -> None:
        self.path = path
        self.uid = os.getuid() if uid is None else uid
        self.build = wire.build()
        self.ttl = duration("agent.ttl", AGENT_TTL)  # re-read at each command
        self.started = time.time()
        self.last_used = time.monotonic()
        self.served = self.refused = 0
        self._commands: queue.Queue[tuple[socket.socket, dict[str, Any]] | None] = queue.Queue()
        self._listener: socket.socket | None = None
        self._engines: _Engines | None = None
        self._code_state = _code_state()
        self.current: Channel | None = None

    # --- life -----------------------------------------------------------------------------

    def serve(self) -> None:
        """Listen, run commands until stopped or idle for ``ttl``, then leave no socket."""
        self._listener = self._listen()
        threading.Thread(target=self._accept, daemon=True).start()
        try:
            self._run_commands()
        finally:
            self._listener.close()
            self._remove_socket()

    def stop(self) -> None:
        self._commands.put(None)

    def on_interrupt(self, _signum: int, _frame: Any) -> None:
        """Ctrl-C at the client (sent as SIGINT by ``Channel``) stops the running command;
        one that arrives after its command ended is ignored."""
        if self.current is not None and self.current.interruptible:
            raise KeyboardInterrupt

    def _listen(self) -> socket.socket:
        """Bind under a temporary name and move it into place, so that a client never
        finds a socket nobody listens on yet; refuse to replace a live agent."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        temporary.unlink(missing_ok=True)
        listener.bind(str(temporary))
        os.chmod(temporary, 0o600)
        listener.listen(64)
        if listening(self.path):
            temporary.unlink()
            raise SystemExit(0)  # another agent got here first: it serves
        os.replace(temporary, self.path)
        self._inode = os.stat(self.path).st_ino
        return listener

    def _remove_socket(self) -> None:
        try:
            if os.stat(self.path).st_ino == self._inode:  # not a successor's
                self.path.unlink()
        except FileNotFoundError:
            pass

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _address = self._listener.accept()
            except OSError:
                return  # closed: the agent is leaving
            threading.Thread(target=self._greet, args=(conn,), daemon=True).start()

    def _greet(self, conn: socket.socket) -> None:
        """Check who is calling, then answer a control request or queue a command."""
        if wire.peer_uid(conn) != self.uid:
            self.refused += 1
            conn.close()
            return
        try:
            conn.settimeout(GREETING_TIMEOUT_S)
            kind, payload = wire.receive(conn)
            conn.settimeout(None)
        except (OSError, EOFError):
            conn.close()
            return
        if kind == wire.REQUEST:
            self._commands.put((conn, wire.decode(payload)))
            return
        with conn:
            if kind == wire.CONTROL:
                op = wire.decode(payload).get("op")
                wire.send_json(conn, wire.STATUS, self.status())
                if op == "stop":
                    self.stop()

    def status(self) -> dict[str, Any]:
        """What ``memos agent status`` shows: never a memory, only counts and names."""
        return {"pid": os.getpid(), "build": self.build, "socket": str(self.path),
                "uptime_s": round(time.time() - self.started, 1),
                "idle_s": round(time.monotonic() - self.last_used, 1), "ttl_s": self.ttl,
                "served": self.served, "refused": self.refused,
                "profiles": self._engines.held() if self._engines else []}

    # --- commands ---------------------------------------------------------------------------

    def _run_commands(self) -> None:
        while True:
            left = self.ttl - (time.monotonic() - self.last_used)
            if left <= 0:
                return  # idle for ttl: leaving forgets the key and everything else
            try:
                item = self._commands.get(timeout=min(left, 60.0))  # ttl may be "inf"
            except queue.Empty:
                continue
            if item is None:
                return
            conn, request = item
            try:
                self._serve(conn, request)
            finally:
                conn.close()
                self.current = None
                self.last_used = time.monotonic()

    def _serve(self, conn: socket.socket, request: dict[str, Any]) -> None:
        channel = Channel(conn, request)
        if request.get("build") != self.build or self.code_changed():
            channel.done({"mismatch": self.build})
            self.stop()  # an upgrade or another installation: the client starts its own
            return
        try:
            os.chdir(request["cwd"])
        except OSError:
            channel.done({"fallback": "working folder"})
            return
        self.current = channel
        with channel.as_client():
            if not self._keep_serving():
                channel.done({"fallback": "agent.ttl is 0"})
                return
            code = channel.run(self._invoke, request["argv"])
            if self._engines is not None:
                self._engines.settle()
        self.served += 1
        channel.done({"code": code})
        if self._engines is not None:
            self._engines.keep_warm()  # the client has its answer: this is idle time

    def _keep_serving(self) -> bool:
        """Take the idle time the user's settings give now; False (and stop) at 0. A config
        file that cannot be read is left to the command, in-process, to report."""
        from memos_cli.core.config import agent_settings
        from memos_cli.core.errors import MemosError
        from memos_cli.core.paths import resolve_paths

        try:
            self.ttl = agent_settings(resolve_paths()).ttl
        except MemosError:
            return True
        if self.ttl <= 0:
            self.stop()
        return self.ttl > 0

    def code_changed(self) -> bool:
        """Whether memos' code on disk differs from what this agent runs (an upgrade in
        place, an edited checkout): a client must then not be served by it."""
        return _code_state() != self._code_state

    def _invoke(self, argv: list[str]) -> int:
        from memos_cli.cli import app

        if self._engines is None:
            self._engines = _Engines(self)
            app.STATE.engines = self._engines
        return app.invoke(argv)


class _Engines:
    """The engines the agent keeps open, one per installation, profile and store. An
    engine is replaced when what it was opened with changes: the environment, the config
    file, or the profile's key files (a rotation or a new passphrase by another process)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self._open: dict[tuple[Any, ...], tuple[tuple[Any, ...], Any]] = {}
        self._used: set[tuple[Any, ...]] = set()  # by the command running now

    def __call__(self, profile: str | None, store: str | None) -> Any:
        from memos_cli.cli.output import err
        from memos_cli.engine import MemoryEngine
        from memos_cli.core.paths import resolve_paths, resolve_profile

        paths, name = resolve_paths(), resolve_profile(profile)
        where, opened_with = (paths, name, store), self._opened_with(paths, name)
        kept = self._open.get(where)
        self._used.add(where)
        if kept is not None and kept[0] == opened_with:
            engine = kept[1]
            engine.damaged.clear()  # what this command finds damaged, as in-process
            return engine
        engine = MemoryEngine(name, paths=paths, store=store, notice=err,
                              passphrase=lambda prompt: self._ask(prompt, new=False),
                              new_passphrase=lambda prompt: self._ask(prompt, new=True))
        self._open[where] = (opened_with, engine)
        return engine

    def settle(self) -> None:
        """After a command: what its engines changed themselves (a new profile's key
        files, a config) is theirs, not another process's, so it keeps them open."""
        for where in self._used:
            _before, engine = self._open[where]
            self._open[where] = (self._opened_with(where[0], where[1]), engine)
        self._used.clear()

    def keep_warm(self) -> None:
        """Let each engine that holds its key read ahead what the next command needs. A
        file that does not read now is the next command's to report."""
        from memos_cli.core.errors import MemosError

        for _opened_with, engine in self._open.values():
            try:
                engine.keep_warm()
            except (MemosError, OSError):
                pass

    def held(self) -> list[dict[str, Any]]:
        return [{"profile": where[1], "store": where[2] or "local", "unlocked": engine.holds_key}
                for where, (_opened_with, engine) in self._open.items()]

    def _ask(self, prompt: str, new: bool) -> str | None:
        assert self.agent.current is not None, "passphrases are asked during a command"
        return self.agent.current.passphrase(prompt, new)

    @staticmethod
    def _opened_with(paths: Any, profile: str) -> tuple[Any, ...]:
        env = tuple(sorted((k, v) for k, v in os.environ.items()
                           if k.startswith(("MEMOS_", "OPENAI_")) and not _read_per_command(k)))
        files = (paths.config_file, *paths.profile_files(profile).key_files)
        return env, tuple(file_identity(path) for path in files)


def _code_state() -> list[tuple[str, tuple[int, int, int] | None]]:
    package = Path(__file__).resolve().parent.parent  # all of memos_cli
    return [(str(source), file_identity(source)) for source in sorted(package.rglob("*.py"))]


def _read_per_command(name: str) -> bool:
    """Variables an open engine does not depend on: a passphrase only unlocks (an engine
    that holds the key must not ask again because the variable is gone), the chat
    model's settings are for chat, and the rest are read afresh by each command."""
    return "PASSPHRASE" in name or name.startswith("MEMOS_LLM_") or name in (
        "MEMOS_DEBUG", "MEMOS_AGENT_TTL", "MEMOS_LOCK_TIMEOUT", "MEMOS_TEST_FAILPOINT",
        "MEMOS_NO_AUTO_CONSOLIDATE")


def main(argv: list[str]) -> None:
    blas.one_thread(os.environ)
    os.umask(0o077)
    agent = Agent(Path(argv[0]))
    signal.signal(signal.SIGTERM, lambda _signum, _frame: agent.stop())
    signal.signal(signal.SIGINT, agent.on_interrupt)
    agent.serve()


if __name__ == "__main__":
    main(sys.argv[1:])
