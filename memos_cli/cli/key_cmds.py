"""Key commands: see how the data key is protected, change the passphrase, rotate the key."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from memos_cli.cli.app import app, engine
from memos_cli.cli.output import err, print_json, print_table, print_tsv, progress, stdout_is_terminal
from memos_cli.core import passphrase as passphrases
from memos_cli.core.atomic import write_atomic
from memos_cli.core.errors import BadInputError

key_app = typer.Typer(help="Manage the encryption key of a profile.", no_args_is_help=True)
app.add_typer(key_app, name="key", rich_help_panel="Keys, backups and setup")


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
def passphrase() -> None:  # the command `memos key passphrase`
    """Set or change the passphrase (MEMOS_NEW_PASSPHRASE for scripts).

    The new wrap is proven to open the store before the old one is removed.
    """
    engine().change_passphrase(passphrases.required("MEMOS_NEW_PASSPHRASE", "New passphrase",
                                                   new=True))
    err("passphrase set: the key is now wrapped by it")


@key_app.command("rotate")
def rotate() -> None:
    """Re-encrypt every memory under a new data key (safe to interrupt and rerun)."""
    with progress("re-encrypting") as step:
        count = engine().rotate_key(step)
    err(f"rotated the data key: {count} memory(ies) re-encrypted")


@key_app.command("export")
def export_key(path: Path = typer.Argument(..., help="Where to write the exported key.")) -> None:
    """Export the key (protected by a passphrase: MEMOS_EXPORT_PASSPHRASE) for another machine."""
    secret = passphrases.required("MEMOS_EXPORT_PASSPHRASE", "Passphrase to protect the export",
                                 new=True)
    doc = engine().export_key(secret)
    write_atomic(path, (json.dumps(doc, indent=1) + "\n").encode(), mode=0o600)
    err(f"wrote {path}: import it on the other machine with 'memos key import {path.name}'")


@key_app.command("import")
def import_key(path: Path = typer.Argument(..., help="A file from 'memos key export'.")) -> None:
    """Adopt a key exported elsewhere, to share a store on a Chroma server."""
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInputError(f"cannot read {path}: {exc}") from None
    engine().import_key(doc, passphrases.required("MEMOS_EXPORT_PASSPHRASE",
                                                 "Passphrase of the export"))
    err("key imported: this machine can now open the store made with it")
