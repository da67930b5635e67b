"""What the resident agent and its clients share: where the agent listens, who may talk
to it, which build it is, and the frames they exchange. Standard library only, because
the client side of every command imports it (it must not pay for chromadb or numpy).

The socket lives in a per-user runtime folder of mode 0700 (``$XDG_RUNTIME_DIR/memos``,
else ``/tmp/memos-UID``), one socket per memos installation (per ``MEMOS_HOME``). The
agent checks the peer's uid on every connection, so the folder's mode is not the only
guard.

A frame is one kind byte, a 4-byte big-endian length and a payload: bytes for output
and stdin, JSON for everything else.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

from memos_cli import __version__
from memos_cli.core.errors import MemosError
from memos_cli.core.paths import Paths

# Client to agent.
REQUEST = b"r"  # a command to run: argv, environment, terminal facts (JSON)
CONTROL = b"c"  # status or stop (JSON)
ANSWER = b"a"  # the answer to a question (JSON)
STDIN = b"d"  # bytes read from the client's stdin, b"" at its end
INTERRUPT = b"i"  # the user pressed Ctrl-C
# Agent to client.
STDOUT = b"o"
STDERR = b"e"
QUESTION = b"q"  # the agent needs a passphrase or stdin from the client (JSON)
DONE = b"x"  # the command's end (JSON): {"code": n}, {"mismatch": build} or {"fallback": why}
STATUS = b"s"  # the answer to a CONTROL frame (JSON)

_HEADER = struct.Struct(">cI")
MAX_FRAME = 64 * 1024 * 1024  # no legitimate frame is this big: a peer that says so is broken


class AgentUnavailable(MemosError):
    """No agent can serve this command (none may be started, or it cannot be reached):
    the command runs in-process instead."""


def send(sock: socket.socket, kind: bytes, payload: bytes = b"") -> None:
    sock.sendall(_HEADER.pack(kind, len(payload)) + payload)


def send_json(sock: socket.socket, kind: bytes, data: Any) -> None:
    send(sock, kind, json.dumps(data).encode("utf-8"))


def receive(sock: socket.socket) -> tuple[bytes, bytes]:
    """The next frame; ``EOFError`` when the peer closed the connection."""
    kind, size = _HEADER.unpack(_read_exactly(sock, _HEADER.size))
    if size > MAX_FRAME:
        raise EOFError("frame too large")
    return kind, _read_exactly(sock, size)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, missing = [], size
    while missing:
        chunk = sock.recv(min(missing, 1 << 20))
        if not chunk:
            raise EOFError("connection closed")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def decode(payload: bytes) -> Any:
    return json.loads(payload.decode("utf-8"))


# --- where the agent listens -----------------------------------------------------------------

def runtime_dir(env: dict[str, str] | os._Environ[str] | None = None) -> Path:
    """The user's private folder for the socket, created 0700; refused (``AgentUnavailable``)
    when it is a symlink, another user's, or open to others."""
    env = os.environ if env is None else env
    base = env.get("XDG_RUNTIME_DIR")
    folder = (Path(base) / "memos" if base and os.path.isdir(base)
              else Path(env.get("TMPDIR") or "/tmp") / f"memos-{os.getuid()}")
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise AgentUnavailable(f"cannot make {folder}: {exc.strerror}") from None
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise AgentUnavailable(f"{folder} is not a folder of this user's")
    if info.st_mode & 0o077:
        raise AgentUnavailable(f"{folder} is open to other users (mode {info.st_mode & 0o777:o})")
    return folder


def socket_path(paths: Paths, env: dict[str, str] | os._Environ[str] | None = None) -> Path:
    """The agent's socket for this installation: one agent per data and config folder."""
    where = f"{paths.data_dir}\0{paths.config_dir}".encode("utf-8", "surrogateescape")
    name = f"{zlib.crc32(where):08x}{zlib.adler32(where):08x}"  # a name, not a secret
    return runtime_dir(env) / f"agent-{name}.sock"


# --- who is talking -------------------------------------------------------------------------

def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket, from the kernel;
    None where this platform offers no way to ask (then no agent runs)."""
    if hasattr(socket, "SO_PEERCRED"):  # Linux
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", raw)[1])
    if sys.platform == "darwin":  # LOCAL_PEERCRED at SOL_LOCAL: struct xucred, cr_uid second
        raw = sock.getsockopt(0, 0x001, struct.calcsize("IIh16I"))
        return int(struct.unpack_from("II", raw)[1])
    return None


def peer_check_supported() -> bool:
    return hasattr(socket, "SO_PEERCRED") or sys.platform == "darwin"


# --- which build ------------------------------------------------------------------------------

def build() -> str:
    """This memos' version and interpreter: an agent of another (an upgrade, another
    virtual environment) is never talked to. The agent also quits when its own code
    changes on disk (``agent_server.Agent.code_changed``)."""
    return f"{__version__} {sys.executable}"
