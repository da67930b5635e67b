"""``memos agent start|stop|status``: the resident agent that keeps memos warm and unlocked."""

from __future__ import annotations

import typer

from memos_cli.cli.app import app
from memos_cli.agent.protocol import AgentUnavailable
from memos_cli.cli.output import err, print_json, print_table, print_tsv, stdout_is_terminal
from memos_cli.core.errors import ExitCode, UsageError

agent_app = typer.Typer(
    help="The resident agent: keeps the key, the store and the model open between commands.",
    no_args_is_help=True)
app.add_typer(agent_app, name="agent", rich_help_panel="Keys, backups and setup")


def _socket():
    from memos_cli.agent import protocol as agent_protocol
    from memos_cli.core.paths import resolve_paths

    if not agent_protocol.peer_check_supported():
        raise AgentUnavailable(
            "this system cannot tell who connects to a socket, so memos runs no agent here")
    return agent_protocol.socket_path(resolve_paths())


@agent_app.command("start")
def start() -> None:
    """Start the agent now (the first memory command starts it anyway, unless
    agent.autostart is false)."""
    from memos_cli.agent import client as agent_client
    from memos_cli.core.config import agent_settings
    from memos_cli.core.paths import resolve_paths

    if agent_settings(resolve_paths()).ttl <= 0:
        raise UsageError("agent.ttl is 0, which keeps no agent: set it first "
                         "(memos config set agent.ttl 15m)")
    path = _socket()
    running = agent_client.control(path, "status")
    if running is None:
        sock = agent_client.start(path)
        if sock is None:
            raise AgentUnavailable("the agent did not start")
        sock.close()
        running = agent_client.control(path, "status")
    if running is not None:
        err(f"memos agent: running (pid {running['pid']})")


@agent_app.command("stop")
def stop() -> None:
    """Stop the agent: it forgets the key and closes the store at once."""
    from memos_cli.agent import client as agent_client

    err("memos agent: stopped" if agent_client.stop(_socket()) else "memos agent: none was running")


@agent_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Whether an agent runs, since when, what it holds; exit 3 when none runs."""
    from memos_cli.agent import client as agent_client

    info = agent_client.control(_socket(), "status")
    if info is None:
        err("memos agent: none is running")
        raise typer.Exit(ExitCode.NOT_FOUND)
    if as_json:
        print_json(info)
        return
    held = ", ".join(f"{p['profile']}{'' if p['unlocked'] else ' (locked)'}"
                     for p in info.pop("profiles")) or "-"
    rows = [*((name, f"{value:g}" if isinstance(value, float) else value)
              for name, value in info.items()), ("profiles", held)]
    print_table("memos agent", ["", "value"], rows) if stdout_is_terminal() else print_tsv(rows)
