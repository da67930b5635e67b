"""``memos import --from FORMAT``: other tools' data (ChatGPT, Claude, Markdown notes) into memos."""

from __future__ import annotations

from pathlib import Path

from memos_cli.cli.app import engine
from memos_cli.cli.output import err, print_json, progress


def import_from(fmt: str, path: Path, dry_run: bool, as_json: bool) -> None:
    """Parse everything first (a broken input stores nothing), then store in batches."""
    from memos_cli.frontends import importers

    importers.check_format(fmt)
    eng = None if dry_run else engine()
    model = None if eng is None or fmt == "markdown" else _learning_model(eng)
    parsed = importers.parse(fmt, path, statements=model is None)
    counts = parsed.counts()
    if eng is not None:
        with progress(f"importing {fmt}") as step:
            stored = importers.store(eng, parsed.items, step)
        counts.update(added=stored.added, skipped=stored.skipped)
        if model is not None:
            counts["learned"] = _learn(eng, model, parsed, stored)
    if as_json:
        print_json(counts)
    elif dry_run:
        print(f"would import {counts['memories']} memories ({_kinds(counts)}) from "
              f"{_sources(counts)}; nothing stored")
    else:
        print(f"added {counts['added']}, skipped {counts['skipped']} already present "
              f"({_kinds(counts)}) from {_sources(counts)}")


def _kinds(counts: dict) -> str:
    from memos_cli.core.memory import KINDS

    return ", ".join(f"{counts[k]} {k}" for k in KINDS if counts.get(k)) or "none"


def _sources(counts: dict) -> str:
    if counts["conversations"]:
        return f"{counts['conversations']} conversation(s)"
    return f"{counts['files']} file(s)"


def _learning_model(eng):
    """The configured chat model: with one, facts are learned as chat learns them."""
    from memos_cli.assistant.llm import chat_model

    model = chat_model(eng.paths, stored_key=eng.secret("llm.api_key"))
    err("learning facts with the configured model" if model is not None else
        "no model is configured: storing what you stated about yourself (offline rules)")
    return model


def _learn(eng, model, parsed, stored) -> int:
    """Run chat's learning step on each exchange whose episode this import added."""
    from memos_cli.assistant import extraction
    from memos_cli.core.timeparse import now_utc

    fresh = {item.source_ref for item in stored.new if item.kind == "episode"}
    learned = 0
    for ex in parsed.exchanges:
        if ex.ref in fresh:
            exchange = extraction.Exchange(ex.user, ex.answer, None, ex.when, ex.ref)
            changes = extraction.learn(eng, lambda m: model.complete(m, json_mode=True),
                                       exchange, ex.when or now_utc())
            for note in changes.notes:
                err(note)
            learned += len(changes.added) + len(changes.updated)
    return learned
