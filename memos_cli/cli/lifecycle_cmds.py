"""Lifecycle commands: consolidate (plan, then apply all or nothing) and audit."""

from __future__ import annotations

import os
import subprocess
from typing import Optional

import typer

from memos_cli.cli.app import app, engine
from memos_cli.cli.output import (err, print_json, print_table, print_tsv, progress,
                                  stdin_is_terminal, stdout_is_terminal)
from memos_cli.core.errors import IntegrityError, MemosError, UsageError
from memos_cli.core.timeparse import parse_when


@app.command(rich_help_panel="Memory over time")
def consolidate(
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; change nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Apply without asking."),
    prune: bool = typer.Option(False, "--prune", help="Also delete archived memories for good."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan (and result) as JSON."),
    quiet: bool = typer.Option(False, "--quiet", hidden=True, help="For the background run."),
) -> None:
    """Merge what says the same thing, summarise old episodes, promote, decay and archive."""
    from memos_cli.core import background

    eng = engine()
    try:
        _consolidate(eng, dry_run, yes, prune, as_json, quiet)
    except BaseException as exc:
        if quiet:  # the background run: its parents back off after a failure
            background.finished(eng.paths, eng.profile, int(getattr(exc, "exit_code", 1) or 1))
        raise
    if not dry_run:
        background.finished(eng.paths, eng.profile, 0)


def _consolidate(eng, dry_run: bool, yes: bool, prune: bool, as_json: bool,
                 quiet: bool) -> None:
    from memos_cli.engine import consolidation

    eng.cause = ("consolidation (automatic, after new memories)" if quiet
                 else f"consolidation ({eng.cause})")
    summarise, judge, same = _model_helpers(eng)
    plan = consolidation.plan(eng, summarise=summarise, judge=judge, same=same)
    if not as_json and not quiet:
        _print_plan(plan, {m.id: m for m in eng.list(include_inactive=True)})
    done: dict[str, int] = {}
    if plan.actions and not dry_run:
        _confirm(len(plan.actions), yes)
        with progress("consolidating") as step:
            done = consolidation.apply(eng, plan, step)
        if not quiet:
            err("applied: " + (", ".join(f"{n} {k}" for k, n in done.items()) or "nothing"))
    elif not plan.actions:
        if not dry_run:  # or the same new memories make it due again
            consolidation.mark_consolidated(eng)
        if not quiet and not as_json:
            err("nothing to consolidate")
    if as_json:  # one JSON document, whatever happened: the plan, and what was applied
        print_json({**plan.to_json(), "applied": done} if yes and not dry_run
                   else plan.to_json())
    if dry_run:
        return
    if prune:
        if not yes and not stdin_is_terminal():
            raise UsageError("refusing to prune without --yes (not a terminal)")
        count = eng.prune()
        if not quiet:
            err(f"pruned {count} archived memory(ies) for good")


def _model_helpers(eng):
    """With a model configured: (summariser of old episodes, judge of contradictions,
    judge of "the same fact?"); each is None without a model."""
    from memos_cli.assistant.llm import contradiction_judge, episode_summariser, sameness_judge

    return (episode_summariser(eng.paths), contradiction_judge(eng.paths),
            sameness_judge(eng.paths))


def _print_plan(plan, memories) -> None:
    from memos_cli.engine.consolidation import describe

    if not plan.actions:
        err("the plan is empty: nothing to merge, summarise, promote, demote or archive")
    for action in plan.actions:
        for line in describe(action, memories):
            print(line)
    for note in plan.skipped:
        err(f"skipped: {note}")


def _confirm(count: int, yes: bool) -> None:
    if yes:
        return
    if not stdin_is_terminal():
        raise UsageError(f"refusing to apply {count} change(s) without --yes (not a terminal)")
    if not typer.confirm(f"Apply these {count} change(s)?", default=False, err=True):
        raise typer.Exit(1)


def maybe_consolidate_in_background(eng) -> None:
    """After writes: if enough new memories arrived, consolidate in a detached process
    (so it never slows the command that triggered it). ``lifecycle.auto_after = 0`` stops it.

    It runs after the command's write committed, so it must never fail the command: a
    store busy or unreadable now only means consolidating is left for a later write.
    """
    from memos_cli.core import background
    from memos_cli.engine import consolidation
    from memos_cli.core.timeparse import now_utc

    try:
        if os.environ.get("MEMOS_NO_AUTO_CONSOLIDATE") == "1" or not consolidation.due(eng):
            return
        if not background.claim(eng.paths, eng.profile, now_utc()):
            note = background.failure_to_tell(eng.paths, eng.profile)
            if note:
                err(note)
            return  # one is running, or the last one failed: wait (see background.py)
        remote = eng.store.remote
        subprocess.Popen(background.command(eng.profile, remote.url if remote else None),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    except (MemosError, OSError):
        return


@app.command(rich_help_panel="Memory over time")
def audit(
    since: Optional[str] = typer.Option(None, "--since", help="Only changes from then on."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Every change to the store: when, what, which memories, and why."""
    eng = engine()
    events = eng.audit(parse_when(since) if since else None)
    if as_json:
        print_json([{"at": e.at, "action": e.action, "ids": e.ids, "count": e.count,
                     "cause": e.cause} for e in events])
    else:
        rows = [(e.at, e.action, e.count, ",".join(i[:8] for i in e.ids), e.cause)
                for e in events]
        if stdout_is_terminal():
            print_table("memos audit", ["when", "what", "n", "ids", "cause"], rows)
        else:
            print_tsv(rows)
    if eng.audit_log.damaged:  # after the events that do open, which are printed
        raise IntegrityError(f"{eng.audit_log.damaged} audit line(s) failed their integrity "
                             "check: the trail was altered, or lines removed or reordered")
