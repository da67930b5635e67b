"""``memos completion SHELL``: print the shell completion script generated from the app."""

from __future__ import annotations

import typer

from memos_cli.cli.app import app

SHELLS = ("bash", "zsh", "fish")


def completion_script(shell: str) -> str:
    """The script for ``shell``; the committed files in completions/ must equal these."""
    from typer._completion_shared import get_completion_script

    if shell not in SHELLS:
        raise typer.BadParameter(f"use one of {', '.join(SHELLS)}")
    return get_completion_script(prog_name="memos", complete_var="_MEMOS_COMPLETE", shell=shell)


@app.command(rich_help_panel="Keys, backups and setup")
def completion(shell: str = typer.Argument(..., help="bash, zsh or fish.")) -> None:
    """Print the completion script for SHELL (see completions/ for ready files)."""
    print(completion_script(shell))
