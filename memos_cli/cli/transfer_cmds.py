"""Export and import commands: take memories out (plaintext, with a warning) and back in."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from memos_cli.core.atomic import write_atomic
from memos_cli.cli.app import app, engine
from memos_cli.cli.output import err, print_json, progress, read_stdin
from memos_cli.core.errors import BadInputError, UsageError


@app.command(rich_help_panel="Memories")
def export(
    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl (default), json or markdown."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Write to FILE (mode 0600) instead of stdout."),
) -> None:
    """Write every memory out in plaintext (jsonl and json re-import losslessly)."""
    from memos_cli.cli.memory_cmds import _report_damage
    from memos_cli.core.transfer import export_text

    eng = engine()
    text = export_text(eng.all_memories(), fmt)
    err("warning: the export is plaintext: anyone who can read it can read your memories")
    if output is None:
        sys.stdout.write(text)
    else:
        write_atomic(output, text.encode("utf-8"), mode=0o600)
        err(f"wrote {output}")
    _report_damage(eng)


@app.command("import", rich_help_panel="Memories")
def import_(
    source: str = typer.Argument(..., help="An export file (jsonl or json), or '-' for stdin; "
                                           "with --from, that tool's file or folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    from_: Optional[str] = typer.Option(
        None, "--from", help="Import another tool's data instead: chatgpt or claude (the export "
                             ".zip or its conversations.json), markdown (a folder of notes)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --from: count, store nothing."),
) -> None:
    """Import a memos export (all or nothing), or with --from a ChatGPT or Claude export or
    Markdown notes. Memories already present are skipped: importing twice adds nothing."""
    if dry_run and from_ is None:
        raise UsageError("--dry-run goes with --from")
    if from_ is not None:
        from memos_cli.cli.import_from import import_from

        return import_from(from_, Path(source), dry_run, as_json)
    from memos_cli.core.transfer import parse_import

    memories = parse_import(_read_source(source))
    eng = engine()
    with progress("importing") as step:
        result = eng.import_memories(memories, step)
    from memos_cli.cli.lifecycle_cmds import maybe_consolidate_in_background

    maybe_consolidate_in_background(eng)
    if as_json:
        print_json({"added": result.added, "skipped": result.skipped})
    else:
        print(f"added {result.added}, skipped {result.skipped} already present")


def _read_source(source: str) -> str:
    if source == "-":
        return read_stdin()
    try:
        return Path(source).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read {source}: {exc}") from None
