"""Backup and restore commands: the whole profile in one encrypted file, and back."""

from __future__ import annotations

from pathlib import Path

import typer

from memos_cli.cli.app import app, engine
from memos_cli.core import passphrase
from memos_cli.cli.output import err, progress
from memos_cli.core.errors import UsageError


@app.command(rich_help_panel="Keys, backups and setup")
def backup(path: Path = typer.Argument(..., help="The backup file to write.")) -> None:
    """Write the whole profile to one encrypted file (passphrase: MEMOS_BACKUP_PASSPHRASE)."""
    from memos_cli.engine.backup import write_backup

    secret = passphrase.required("MEMOS_BACKUP_PASSPHRASE", "Passphrase for the backup", new=True)
    with progress("backing up") as step:
        count = write_backup(engine(), path, secret, step)
    err(f"backed up {count} memory(ies) to {path}")


@app.command(rich_help_panel="Keys, backups and setup")
def restore(
    path: Path = typer.Argument(..., help="A file from 'memos backup'."),
    force: bool = typer.Option(False, "--force", help="Replace a profile that is not empty."),
) -> None:
    """Restore a backup into an empty profile, or replace one with --force.

    Every byte is checked before anything is written; the swap is all or nothing.

    Passphrase: MEMOS_BACKUP_PASSPHRASE, or asked for on a terminal.
    """
    from memos_cli.engine.backup import restore as restore_backup

    if not path.exists():
        raise UsageError(f"no such file: {path}")
    secret = passphrase.required("MEMOS_BACKUP_PASSPHRASE", "Backup passphrase")
    with progress("restoring") as step:
        count = restore_backup(engine(), path, secret, force=force, progress=step)
    err(f"restored {count} memory(ies)")
