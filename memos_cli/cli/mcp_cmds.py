"""``memos mcp``: serve the memory to MCP clients (Claude Desktop, Claude Code, Cursor, VS Code)."""

from __future__ import annotations

import os
import secrets
from typing import Optional

import typer

from memos_cli.cli.app import STATE, app
from memos_cli.cli.output import err
from memos_cli.core.errors import UsageError

TOKEN_ENV = "MEMOS_MCP_TOKEN"


@app.command(rich_help_panel="Assistants")
def mcp(
    allow_forget: bool = typer.Option(False, "--allow-forget",
                                      help="Offer the forget tool (deletes for good)."),
    allow_update: bool = typer.Option(False, "--allow-update", help="Offer the update tool."),
    read_only: bool = typer.Option(False, "--read-only", help="Offer recall, list and show only."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p",
                                          help="Memory set to serve (as memos --profile)."),
    http: Optional[int] = typer.Option(
        None, "--http", metavar="PORT",
        help=f"Serve streamable HTTP on 127.0.0.1:PORT (bearer token from ${TOKEN_ENV}) "
             "instead of stdio."),
) -> None:
    """Serve your memories over the Model Context Protocol (stdio by default).

    The passphrase comes from MEMOS_PASSPHRASE (the keyring or a key file need none).
    """
    if read_only and (allow_forget or allow_update):
        raise UsageError("--read-only cannot be combined with --allow-forget or --allow-update")
    from memos_cli.engine import MemoryEngine
    from memos_cli.core.passphrase import profile_passphrase
    from memos_cli.frontends.mcp_server import (MemoryTools, Options, build_server, check_unlock,
                                      serve_http, serve_stdio)

    # stdin is the protocol's channel: the passphrase can only come from the environment.
    eng = MemoryEngine(profile or STATE.profile, passphrase=profile_passphrase, notice=err, store=STATE.store)
    check_unlock(eng)
    server = build_server(MemoryTools(eng), Options(allow_forget, allow_update, read_only))
    if http is None:
        serve_stdio(server)
        return
    token = os.environ.get(TOKEN_ENV)
    if not token:
        token = secrets.token_urlsafe(24)
        err(f"memos mcp: no ${TOKEN_ENV} set; this run's bearer token is {token}")
    err(f"memos mcp: serving http://127.0.0.1:{http}/mcp")
    serve_http(server, http, token)
