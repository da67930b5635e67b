"""Key commands: see how the data key is protected, change the passphrase, rotate the key."""

from __future__ import annotations

import getpass
import os
import sys

import typer

from memos_cli.cli.app import app, engine
from memos_cli.cli.output import err, print_json, print_table, print_tsv, progress, stdout_is_terminal
from memos_cli.errors import UsageError

key_app = typer.Typer(help="Manage the encryption key of a profile.", no_args_is_help=True)
app.add_typer(key_app, name="key")


@key_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """How this profile's key is protected (passphrase, keyring or key file)."""
    eng = engine()
    info = eng.keys.status() if eng.exists() else {"profile": eng.profile, "mode": None}
    if as_json:
        print_json(info)
    elif stdout_is_terminal():
        print_table("memos key", ["", "value"], list(info.items()))
    else:
        print_tsv(list(info.items()))


@key_app.command("passphrase")
def passphrase() -> None:
    """Set or change the passphrase (MEMOS_NEW_PASSPHRASE for scripts).

    The new wrap is proven to open the store before the old one is removed.
    """
    new = os.environ.get("MEMOS_NEW_PASSPHRASE")
    if not new:
        if not sys.stdin.isatty():
            raise UsageError("set MEMOS_NEW_PASSPHRASE, or run this on a terminal")
        new = getpass.getpass("New passphrase: ", stream=sys.stderr)
        if new != getpass.getpass("Repeat it: ", stream=sys.stderr):
            raise UsageError("the two passphrases differ: nothing changed")
    engine().change_passphrase(new)
    err("passphrase set: the key is now wrapped by it")


@key_app.command("rotate")
def rotate() -> None:
    """Re-encrypt every memory under a new data key (safe to interrupt and rerun)."""
    with progress("re-encrypting") as step:
        count = engine().rotate_key(step)
    err(f"rotated the data key: {count} memory(ies) re-encrypted")
