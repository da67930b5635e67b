"""Memory commands: remember, recall, list, show, update, forget, stats, reindex."""

from __future__ import annotations

from typing import List, Optional

import typer

from memos_cli.cli.app import app, engine
from memos_cli.cli.output import (err, memory_json, print_json, print_memories, print_table,
                                  print_tsv, progress, read_stdin, stdin_is_terminal,
                                  stdout_is_terminal)
from memos_cli.core.errors import IntegrityError, NotFoundError, UsageError, VersionError, WrongKeyError
from memos_cli.core.memory import KINDS, SHORT_ID, TIERS, Memory
from memos_cli.core.timeparse import parse_when

JSON = typer.Option(False, "--json", help="Print JSON.")
KIND_HELP = f"One of: {', '.join(KINDS)}."
TIER_HELP = f"Only this tier: {', '.join(TIERS)}."
SINCE = typer.Option(None, "--since", help="Only from this time on: ISO date or '3 days ago'.")
UNTIL = typer.Option(None, "--until", help="Only up to this time.")
CONFIRM_SHOWN = 20  # memories listed before a forget asks for confirmation


def _when(value: Optional[str]):
    return parse_when(value) if value else None


def _read_text_arg(text: Optional[str]) -> str:
    """TEXT, or stdin when TEXT is '-' or absent and stdin is piped."""
    if text is None or text == "-":
        if text is None and stdin_is_terminal():
            raise UsageError("give the text to remember, or pipe it on stdin")
        return read_stdin()
    return text


def _report_damage(eng) -> None:
    """Readable records were printed; now say which were not, and exit 5."""
    if eng.damaged:
        ids = ", ".join(i[:SHORT_ID] for i in eng.damaged)
        raise IntegrityError(f"{len(eng.damaged)} memory(ies) failed the integrity check "
                             f"and were left out: {ids}")


@app.command(rich_help_panel="Memories")
def remember(
    text: Optional[str] = typer.Argument(None, help="The memory; '-' or omitted reads stdin."),
    kind: str = typer.Option("note", "--kind", "-k", help=KIND_HELP),
    tag: List[str] = typer.Option([], "--tag", "-t", help="A tag (repeat for more)."),
    importance: float = typer.Option(0.5, "--importance", "-i", min=0.0, max=1.0,
                                     help="How much this matters, 0..1."),
    at: Optional[str] = typer.Option(None, "--at", help="When it happened: ISO date or '3 days ago'."),
    lines: bool = typer.Option(False, "--lines", help="One memory per non-empty line of input."),
    as_json: bool = JSON,
) -> None:
    """Store a memory (encrypted). Prints its id.

    Examples:

      memos remember "I prefer aisle seats on long flights" --kind preference -t travel

      cat notes.txt | memos remember --lines --tag notes
    """
    from memos_cli.engine import NewMemory

    body = _read_text_arg(text)
    chunks = [line for line in body.splitlines() if line.strip()] if lines else [body]
    source = "stdin" if text in (None, "-") else "cli"
    items = [NewMemory(chunk, kind=kind, tags=tag, importance=importance,
                       occurred_at=_when(at), source=source) for chunk in chunks]
    if not any(item.text.strip() for item in items):
        raise UsageError("nothing to remember: the text is empty")
    eng = engine()
    results = eng.remember_many(items)
    from memos_cli.cli.lifecycle_cmds import maybe_consolidate_in_background

    maybe_consolidate_in_background(eng)
    for result in results:
        if not result.created:
            err(f"already remembered as {result.memory.id[:SHORT_ID]}: nothing added")
    if as_json:
        records = [dict(memory_json(r.memory), created=r.created) for r in results]
        print_json(records if lines else records[0])
        return
    for result in results:
        print(result.memory.id)


@app.command(rich_help_panel="Memories")
def recall(
    query: str = typer.Argument(..., help="What to look for, in your own words."),
    limit: int = typer.Option(10, "--limit", "-n", min=1, help="How many results."),
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help=KIND_HELP),
    tag: Optional[str] = typer.Option(None, "--tag", "-t", help="Only memories with this tag."),
    since: Optional[str] = SINCE,
    until: Optional[str] = UNTIL,
    at: Optional[str] = typer.Option(None, "--at", help="What was true then (ISO date, '3 days ago')."),
    tier: Optional[str] = typer.Option(None, "--tier", help=TIER_HELP),
    floor: Optional[float] = typer.Option(
        None, "--floor", min=0.0, max=1.0,
        help="Least relevance (0..1) to print; default 0.32 (config: recall.floor)."),
    expand: Optional[bool] = typer.Option(
        None, "--expand/--no-expand",
        help="Ask the chat model (llm.model) how an answer might be worded, and search with "
             "that too. Sends the question, never a memory, to the model. Default: off "
             "(config: recall.expand)."),
    as_json: bool = JSON,
) -> None:
    """Find memories by meaning, best first, each with a relevance score (0..1).

    Only memories that clear the relevance floor are printed; when none does, nothing
    is printed ('[]' with --json) and the exit code is 3.

    Examples:

      memos recall "where do I like to sit on a plane"

      memos recall "dentist" --since "2 weeks ago" --json

      memos recall "which countries have I been to" --expand
    """
    eng = engine()
    also = _expansions(eng, query, expand)
    hits = eng.recall(query, limit, kind=kind, tag=tag, since=_when(since), until=_when(until),
                      at=_when(at), tier=tier, floor=floor, also=also)
    if as_json:
        print_json([dict(memory_json(h.memory, h.score), similarity=round(h.similarity, 4))
                    for h in hits])
    else:
        print_memories([h.memory for h in hits], [h.score for h in hits])
    _report_damage(eng)
    if not hits:
        raise NotFoundError("nothing relevant found")


def _expansions(eng, query: str, wanted: Optional[bool]) -> list[str]:
    """The chat model's wordings of what an answer to ``query`` may say, when asked for
    (``--expand``, or config recall.expand); a reply it cannot read is left out, said so."""
    from memos_cli.core.config import recall_expand

    if not (recall_expand(eng.paths) if wanted is None else wanted):
        return []
    from memos_cli.assistant.expansion import expander
    from memos_cli.assistant.llm import chat_model

    model = chat_model(eng.paths, stored_key=eng.secret("llm.api_key"))
    if model is None:
        raise UsageError("--expand needs a chat model: set one with "
                         "'memos config set llm.model NAME' (see README, Chat that remembers)")
    lines = expander(model)(query)
    if not lines:
        err("the model's reply held no usable wording: recalled with the question alone")
    return lines


@app.command("list", rich_help_panel="Memories")
def list_(
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help=KIND_HELP),
    tag: Optional[str] = typer.Option(None, "--tag", "-t", help="Only memories with this tag."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="At most this many."),
    tier: Optional[str] = typer.Option(None, "--tier", help=TIER_HELP),
    since: Optional[str] = SINCE,
    until: Optional[str] = UNTIL,
    all_: bool = typer.Option(False, "--all", help="Include memories no longer valid, and archived ones."),
    as_json: bool = JSON,
) -> None:
    """List memories, newest first (by when they happened, or were recorded)."""
    eng = engine()
    memories = eng.list(kind=kind, tag=tag, tier=tier, limit=limit, include_inactive=all_,
                        since=_when(since), until=_when(until))
    print_memories(memories, None, as_json)
    _report_damage(eng)


@app.command(rich_help_panel="Memories")
def show(ref: str = typer.Argument(..., help="A memory id or unique prefix."),
         as_json: bool = JSON) -> None:
    """Show one memory with its history of earlier versions."""
    memory = engine().show(ref)
    if as_json:
        print_json(memory_json(memory, history=True))
        return
    _print_detail(memory)


def _print_detail(memory: Memory) -> None:
    fields = [("id", memory.id), ("text", memory.text), ("kind", memory.kind),
              ("tags", ", ".join(memory.tags)), ("importance", memory.importance),
              ("status", memory.status), ("tier", memory.tier), ("created", memory.created_at),
              ("updated", memory.updated_at), ("occurred", memory.occurred_at),
              ("valid", f"{memory.valid_from or memory.created_at} .. {memory.valid_to or 'now'}"),
              ("recalled", f"{memory.access_count} times, last {memory.last_access or 'never'}"),
              ("source", memory.source + (f" ({memory.source_ref})" if memory.source_ref else "")),
              ("derived from", ", ".join(i[:SHORT_ID] for i in memory.derived_from))]
    if stdout_is_terminal():
        print_table(None, ["field", "value"], [(k, v) for k, v in fields])
    else:
        print_tsv(fields)
    for n, old in enumerate(reversed(memory.history), start=1):
        line = f"history[{n}]\t{old.updated_at}\t{old.reason}\t{old.text}"
        print(line if not stdout_is_terminal() else line.replace("\t", "  "))


@app.command(rich_help_panel="Memories")
def update(
    ref: str = typer.Argument(..., help="A memory id or unique prefix."),
    text: Optional[str] = typer.Argument(None, help="The new text ('-' reads stdin)."),
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help=KIND_HELP),
    tag: Optional[List[str]] = typer.Option(None, "--tag", "-t", help="Replace the tags."),
    importance: Optional[float] = typer.Option(None, "--importance", "-i", min=0.0, max=1.0),
    correction: bool = typer.Option(
        False, "--correction", help="The old text was a mistake: recall --at any time reads the "
        "new text. Without it the change happened now, and earlier times keep the old text."),
    as_json: bool = JSON,
) -> None:
    """Change a memory; the previous version is kept in its history."""
    from memos_cli.core.memory import CORRECTED

    new_text = read_stdin() if text == "-" else text
    if new_text is None and kind is None and tag is None and importance is None:
        raise UsageError("nothing to change: give new text or --kind/--tag/--importance")
    memory = engine().update(ref, new_text, kind=kind, tags=tag, importance=importance,
                             reason=CORRECTED if correction else "update")
    if as_json:
        print_json(memory_json(memory, history=True))
    else:
        print(memory.id)


@app.command(rich_help_panel="Memories")
def forget(
    refs: Optional[List[str]] = typer.Argument(None, help="Memory ids or unique prefixes."),
    query: Optional[str] = typer.Option(None, "--query", "-q", help="Memories matching this."),
    limit: int = typer.Option(5, "--limit", "-n", min=1, help="With --query: how many."),
    tag: Optional[str] = typer.Option(None, "--tag", "-t", help="Every memory with this tag."),
    before: Optional[str] = typer.Option(None, "--before", help="Every memory created before."),
    all_: bool = typer.Option(False, "--all", help="Everything, and the profile's keys."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would go; change nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (needed when not on a terminal)."),
    as_json: bool = JSON,
) -> None:
    """Delete memories for good: no text, vector or old version stays on disk.

    With --query, only memories that clear recall's relevance floor go; on a terminal
    they are listed before memos asks.

    Examples:

      memos forget 0ec0ca9f

      memos forget --query "old wifi password" --dry-run
    """
    chosen = sum(bool(x) for x in (refs, query, tag, before, all_))
    if chosen != 1:
        raise UsageError("say what to forget: IDs, or one of --query, --tag, --before, --all")
    eng = engine()
    if all_:
        readable = _readable_or_none(eng)
        targets, damaged = readable or [], list[str]()
    else:
        readable = None
        targets, damaged = _forget_targets(eng, refs, query, limit, tag, before)
        if targets:
            targets = _with_derived(eng, targets)
    for memory_id in damaged:
        err(f"{memory_id[:SHORT_ID]} is damaged (it cannot be read): it goes too")
    what = ("every memory of a profile that cannot be opened" if all_ and readable is None
            else f"{len(targets) + len(damaged)} memory(ies)")
    if dry_run:
        print_memories(targets, None, as_json, title="Would forget")
        err(f"dry run: {what} would be forgotten"
            + (", and the profile's keys destroyed" if all_ else ""))
        return
    if not targets and not damaged and not all_:
        err("nothing matches: nothing forgotten")
        return
    _confirm(what + (" and this profile's keys" if all_ else ""), targets, yes)
    ids = [m.id for m in targets] + damaged
    count = eng.forget_all() if all_ else eng.forget(ids)
    if as_json:
        print_json({"forgotten": ids, "count": count})
    else:
        for memory_id in ids:
            print(memory_id)
    err(f"forgot {count} memory(ies)" + (" and destroyed the profile's keys" if all_ else ""))


def _with_derived(eng, targets: list[Memory]) -> list[Memory]:
    """Add what was made from the targets (summaries); say what will be rebuilt."""
    doomed, rebuilt = eng.forget_preview([m.id for m in targets])
    chosen = {m.id for m in targets}
    derived = [m for m in doomed if m.id not in chosen]
    for memory in derived:
        err(f"also forgets {memory.id[:SHORT_ID]}, made from them: {memory.text!r}")
    for memory in rebuilt:
        err(f"rebuilds {memory.id[:SHORT_ID]} without their text")
    return targets + derived


def _readable_or_none(eng) -> list[Memory] | None:
    """Every memory of the profile; None if it cannot be opened (a lost passphrase or
    key): ``forget --all`` is the way out, so it destroys what it cannot read."""
    try:
        return eng.list(include_inactive=True)
    except (WrongKeyError, IntegrityError, VersionError) as exc:
        err(f"the profile cannot be opened ({exc}): --all destroys it without reading it")
        return None


def _forget_targets(eng, refs, query, limit, tag, before) -> tuple[list[Memory], list[str]]:
    """What to forget: readable memories, and ids of damaged ones (only named by id)."""
    if refs:
        return eng.lookup(refs)
    if query:  # only what clears the relevance floor, as recall would print it
        return [h.memory for h in eng.recall(query, limit, record_access=False)], []
    memories = eng.list(include_inactive=True)
    if tag:
        return [m for m in memories if tag.strip().lower() in m.tags], []
    cutoff = parse_when(before)
    return [m for m in memories if parse_when(m.created_at) < cutoff], []


def _confirm(what: str, targets: list[Memory], yes: bool) -> None:
    if yes:
        return
    if not stdin_is_terminal():
        raise UsageError(f"refusing to forget {what} without --yes (not a terminal)")
    for memory in targets[:CONFIRM_SHOWN]:  # say what goes before asking
        err(f"  {memory.id[:SHORT_ID]}  {memory.kind}  {memory.text}")
    if len(targets) > CONFIRM_SHOWN:
        err(f"  ... and {len(targets) - CONFIRM_SHOWN} more (--dry-run lists them all)")
    if not typer.confirm(f"Forget {what} for good?", default=False, err=True):
        raise typer.Exit(1)


@app.command(rich_help_panel="Memories")
def stats(as_json: bool = JSON) -> None:
    """Counts, bytes on disk, embedding model and key mode."""
    eng = engine()
    info = eng.stats()
    if as_json:
        print_json(info)
    else:
        rows = [(k, ", ".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else v)
                for k, v in info.items()]
        if stdout_is_terminal():
            print_table("memos stats", ["", "value"], rows)
        else:
            print_tsv(rows)
    _report_damage(eng)


@app.command(rich_help_panel="Memories")
def reindex() -> None:
    """Re-embed every memory with the configured embedding model."""
    eng = engine()
    with progress("re-embedding") as step:
        count = eng.reindex(step)
    err(f"re-embedded {count} memory(ies) with {eng.embedder.model_id}")
