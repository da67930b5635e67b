"""How the command line prints: data to stdout, everything else to stderr.

Three shapes for data: ``--json``; on a terminal, rich tables; otherwise one
record per line, tab-separated, no colour (so ``cut``/``awk`` work). Notices,
warnings and progress go to stderr, never mixed into data.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from memos_cli.core.errors import BadInputError
from memos_cli.core.memory import SHORT_ID, Memory


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def read_stdin() -> str:
    """All of stdin as text; bytes that are not UTF-8 are bad input (exit 8), never
    a crash further on (Python hands them over as lone surrogates)."""
    return checked_utf8(sys.stdin.read(), "stdin")


def checked_utf8(text: str, where: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadInputError(f"{where} is not valid UTF-8 text (at character {exc.start + 1})") from None
    return text


def err(message: str) -> None:
    """One line of chatter on stderr."""
    print(message, file=sys.stderr, flush=True)


def print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def tsv_field(value: Any) -> str:
    """A value made safe for one TSV cell: no tabs or newlines inside."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    if isinstance(value, float):
        value = f"{value:.4f}"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def print_tsv(rows: Sequence[Sequence[Any]]) -> None:
    for row in rows:
        print("\t".join(tsv_field(v) for v in row))


def memory_json(memory: Memory, score: float | None = None, history: bool = False) -> dict:
    data = memory.to_dict()
    if not history:
        data.pop("history")
    if score is not None:
        data = {"id": data.pop("id"), "text": data.pop("text"), "score": round(score, 4), **data}
    return data


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, no_color="NO_COLOR" in os.environ)


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    _console().print(table)


def _cell(value: Any) -> str:
    from rich.markup import escape

    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, (list, tuple)):
        return escape(", ".join(str(v) for v in value))
    return escape(str(value))


def print_memories(memories: Sequence[Memory], scores: Sequence[float] | None = None,
                   as_json: bool = False, title: str | None = None) -> None:
    """The one way memories are listed: JSON array, rich table, or TSV lines."""
    scored = scores is not None
    lead: list[list[Any]] = [[s] for s in scores] if scores is not None else [[]] * len(memories)
    if as_json:
        print_json([memory_json(m, scores[n] if scores is not None else None)
                    for n, m in enumerate(memories)])
        return
    if stdout_is_terminal():
        columns = (["score"] if scored else []) + ["id", "kind", "created", "tags", "text"]
        rows = [lead[n] + [m.id[:SHORT_ID], m.kind, m.created_at[:10], m.tags, m.text]
                for n, m in enumerate(memories)]
        print_table(title, columns, rows)
        return
    print_tsv([lead[n] + [m.id, m.kind, m.created_at, m.tags, m.text]
               for n, m in enumerate(memories)])


@contextmanager
def progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A ``step(done, total)`` callback drawing a bar on stderr for large jobs on a terminal."""
    if not sys.stderr.isatty():
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)
    task = None

    def step(done: int, total: int) -> None:
        nonlocal task
        if total < 200:
            return
        if task is None:
            bar.start()
            task = bar.add_task(label, total=total)
        bar.update(task, completed=done)

    try:
        yield step
    finally:
        bar.stop()
