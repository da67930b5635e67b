"""Settings commands: config show, set and unset (secrets go to the sealed vault)."""

from __future__ import annotations

import typer

from memos_cli.cli.app import app, engine
from memos_cli.cli.output import err, print_json, print_table, print_tsv, read_stdin, stdout_is_terminal
from memos_cli.core.errors import UsageError

config_app = typer.Typer(help="Show and change settings (config.toml; secrets go to the vault).",
                         no_args_is_help=True)
app.add_typer(config_app, name="config", rich_help_panel="Keys, backups and setup")


@config_app.command("show")
def config_show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every setting in effect, where it comes from (flag, environment, file, vault,
    default) and the config file's path. Secrets show as set or not, never their value."""
    import os

    from memos_cli.cli.app import STATE
    from memos_cli.core.config import ENV_NAMES, SECRET_KEYS, Setting, effective_settings

    eng = engine()
    # Typer fills --store from MEMOS_STORE too: it is a flag only when they differ.
    flag = STATE.store if STATE.store != os.environ.get("MEMOS_STORE") else None
    settings = [Setting("profile", eng.profile,
                        "flag" if STATE.profile and STATE.profile != os.environ.get("MEMOS_PROFILE")
                        else "environment" if os.environ.get("MEMOS_PROFILE") else "default")]
    settings += effective_settings(eng.paths, {"store.url": flag})
    for name in sorted(SECRET_KEYS):
        source = ("environment" if os.environ.get(ENV_NAMES[name])
                  else "vault" if eng.secret(name) else "default")
        settings.append(Setting(name, None if source == "default" else "(set)", source))
    path = str(eng.paths.config_file)
    if as_json:
        print_json({"file": path, "file_exists": eng.paths.config_file.exists(),
                    "settings": [vars(s) for s in settings]})
        return
    rows = [(s.name, s.value, s.source) for s in settings]
    if stdout_is_terminal():
        print_table(path, ["setting", "value", "from"], rows)
    else:
        print_tsv([("file", path, "present" if eng.paths.config_file.exists() else "absent")]
                  + rows)


@config_app.command("set")
def config_set(key: str = typer.Argument(..., help="e.g. llm.model, llm.preset, llm.api_key"),
               value: str = typer.Argument(..., help="The value ('-' reads stdin).")) -> None:
    """Set a setting; an API key is sealed in the vault, never written to config.toml."""
    from memos_cli.core.config import SECRET_KEYS, set_value

    value = read_stdin().strip() if value == "-" else value
    eng = engine()
    if key in SECRET_KEYS:
        eng.set_secret(key, value)
        err(f"{key} stored in the encrypted vault")
    else:
        set_value(eng.paths, key, value)


@config_app.command("unset")
def config_unset(key: str = typer.Argument(...)) -> None:
    """Remove a setting (or a secret from the vault)."""
    from memos_cli.core.config import SECRET_KEYS, unset_value

    eng = engine()
    if key in SECRET_KEYS:
        eng.set_secret(key, None)
    elif not unset_value(eng.paths, key):
        raise UsageError(f"{key} was not set")
