"""Chat commands: chat (a REPL), ask (one question, for scripts), models."""

from __future__ import annotations

import sys
from typing import Iterator, Optional

import typer

from memos_cli.cli.app import app, engine
from memos_cli.cli.output import (checked_utf8, err, print_json, read_stdin, stdin_is_terminal,
                                  stdout_is_terminal)
from memos_cli.core.errors import MemosError, ModelError, UsageError

HELP = """/recall Q   search your memories       /remember TEXT  store a memory
/forget ID  forget a memory for good    /memories      what informed the last answer
            (asks first; piped: /forget ID --yes)
/new        start a new session         /help          this text
/exit       leave (or Ctrl-D)           Esc Enter      a new line in your message"""

# Options chat and ask share (declared once so the two commands cannot drift apart).
MODEL_FLAGS = {
    "no_learn": typer.Option(False, "--no-learn", help="Write nothing (incognito)."),
    "no_memory": typer.Option(False, "--no-memory", help="Read no memories."),
    "offline": typer.Option(False, "--offline", help="Do not use a model."),
    "model": typer.Option(None, "--model", "-m", help="Model name (overrides the config)."),
    "base_url": typer.Option(None, "--base-url", help="OpenAI-compatible server URL."),
    "preset": typer.Option(None, "--preset", help="ollama, lmstudio, vllm, llamacpp or openai."),
}


def _model(eng, offline: bool, model: Optional[str], base_url: Optional[str],
           preset: Optional[str]):
    """The configured chat model, or None (said once on stderr) when there is none."""
    if offline:
        err("offline: no model is used; memos stores what you state and answers from memory")
        return None
    from memos_cli.assistant.llm import chat_model

    chosen = chat_model(eng.paths, {"model": model, "base_url": base_url, "preset": preset},
                        stored_key=eng.secret("llm.api_key"))
    if chosen is None:
        err("no model is configured (memos config set llm.model NAME): memos stores what "
            "you state and answers from memory, labelled as recalled")
    return chosen


def _new_session(no_learn: bool, no_memory: bool, offline: bool, model: Optional[str],
                 base_url: Optional[str], preset: Optional[str]):
    from memos_cli.assistant.chat import ChatSession

    eng = engine()
    return eng, ChatSession(eng, _model(eng, offline, model, base_url, preset),
                            learn=not no_learn, use_memory=not no_memory)


@app.command(rich_help_panel="Chat")
def chat(
    continue_: bool = typer.Option(False, "--continue", "-c", help="Continue the last session."),
    no_learn: bool = MODEL_FLAGS["no_learn"],
    no_memory: bool = MODEL_FLAGS["no_memory"],
    offline: bool = MODEL_FLAGS["offline"],
    model: Optional[str] = MODEL_FLAGS["model"],
    base_url: Optional[str] = MODEL_FLAGS["base_url"],
    preset: Optional[str] = MODEL_FLAGS["preset"],
) -> None:
    """Chat with a model that remembers you (slash commands: /help).

    Examples:

      memos chat --preset ollama --model llama3.2

      printf 'what do I usually order?\n' | memos chat
    """
    from memos_cli.assistant.chat import last_session

    eng, session = _new_session(no_learn, no_memory, offline, model, base_url, preset)
    if continue_:
        session.session_id, session.history = _continued(last_session(eng), session.session_id)
    piped = not stdin_is_terminal()
    read = _piped_lines() if piped else _terminal_lines()
    try:
        for line in read:
            if not line.strip():
                continue
            if line.startswith("/"):
                if not _slash(session, line.strip()):
                    break
                continue
            if piped:  # text from a pipe is data, as in ask: it goes in a <stdin> block
                _answer(session, "", line)
            else:
                _answer(session, line)
    finally:
        session.wait_for_learning()
        _report_learning(session)
    if session.learn:
        from memos_cli.cli.lifecycle_cmds import maybe_consolidate_in_background

        maybe_consolidate_in_background(eng)  # a session's end is a natural moment


def _continued(found, fresh_id: str):
    session_id, turns = found
    if session_id is None:
        err("no earlier session to continue: starting a new one")
        return fresh_id, []
    err(f"continuing session {session_id} ({len(turns) // 2} exchanges)")
    return session_id, turns


def _answer(session, text: str, stdin_text: str | None = None) -> None:
    try:
        _render(session.respond(text, stdin_text))
    except KeyboardInterrupt:
        session.stop()
        err("\n[stopped]")
        return
    session.after_answer(text, stdin_text)
    _report_learning(session)


def _render(chunks: Iterator[str]) -> None:
    """Stream to stdout: markdown on a terminal, plain text when piped."""
    if not stdout_is_terminal():
        for chunk in chunks:
            sys.stdout.write(chunk)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return
    from rich.console import Console
    from rich.live import Live
    from rich.markdown import Markdown

    text = ""
    with Live(Markdown(""), console=Console(), refresh_per_second=12, transient=False) as live:
        for chunk in chunks:
            text += chunk
            live.update(Markdown(text))


def _report_learning(session) -> None:
    while session.learned:
        changes = session.learned.pop(0)
        for note in changes.notes:
            err(note)
        if changes.ids:
            err(f"(learned: {len(changes.added)} new, {len(changes.updated)} updated, "
                f"{len(changes.retired)} no longer valid)")


def _slash(session, line: str) -> bool:
    """Run a slash command; False means leave. Its errors are messages: the session goes on."""
    command, _, arg = line.partition(" ")
    if command in ("/exit", "/quit"):
        return False
    try:
        _run_slash(session, command, arg.strip(), line)
    except MemosError as exc:
        err(f"memos: {exc}")
    return True


def _run_slash(session, command: str, arg: str, line: str) -> None:
    eng = session.engine
    if command == "/help":
        print(HELP)
    elif command == "/new":
        session.wait_for_learning()
        _report_learning(session)
        session.start_new()
        err(f"new session {session.session_id}")
    elif command == "/memories":
        for m in session.last.memories_used:
            print(f"{m.id[:8]}  {m.created_at[:10]}  {m.text}")
    elif command == "/recall" and arg:
        with session.lock:
            hits = eng.recall(arg, 5, record_access=session.learn)
        for h in hits:
            print(f"{h.memory.id[:8]}  {h.score:.2f}  {h.memory.text}")
    elif command == "/remember" and arg:
        _slash_remember(session, arg)
    elif command == "/forget" and arg:
        _slash_forget(session, arg.split())
    else:
        err(f"unknown or incomplete command {line!r}: /help lists them")


def _slash_forget(session, words: list[str]) -> None:
    """Like memos forget: list what will go, then ask on a terminal; a pipe needs --yes."""
    refs = [w for w in words if w not in ("--yes", "-y")]
    if not refs:
        raise UsageError("/forget needs a memory id")
    with session.lock:
        doomed, rebuilt = session.engine.forget_preview(refs)
    if not doomed:
        err("nothing matches: nothing forgotten")
        return
    for memory in doomed:
        err(f"  {memory.id[:8]}  {memory.text}")
    for memory in rebuilt:
        err(f"  rebuilds {memory.id[:8]} without their text")
    if len(refs) == len(words):  # no --yes
        if not stdin_is_terminal():
            raise UsageError("refusing to forget without --yes (not a terminal): /forget ID --yes")
        if not _confirmed(f"Forget {len(doomed)} memory(ies) for good?"):
            err("nothing forgotten")
            return
    with session.lock:
        count = session.engine.forget(refs)
    err(f"forgot {count} memory(ies)")


def _confirmed(question: str) -> bool:
    """Ask y/N; Ctrl-C or Ctrl-D is a no (it must not end the whole session)."""
    try:
        return typer.confirm(question, default=False, err=True)
    except (KeyboardInterrupt, EOFError, typer.Abort):
        return False


def _slash_remember(session, text: str) -> None:
    from memos_cli.engine import NewMemory

    if not session.learn:
        err("--no-learn is on: nothing stored")
        return
    with session.lock:
        result = session.engine.remember(NewMemory(text, source="chat",
                                                   source_ref=session.session_id))
    err(("remembered " if result.created else "already remembered ") + result.memory.id[:8])


def _piped_lines() -> Iterator[str]:
    """Messages from a pipe: one per line; a line ending in a backslash continues."""
    pending = ""
    for raw in sys.stdin:
        line = checked_utf8(raw, "stdin").rstrip("\n")
        if line.endswith("\\"):
            pending += line[:-1] + "\n"
            continue
        yield pending + line
        pending = ""
    if pending:
        yield pending


def _terminal_lines() -> Iterator[str]:
    """Messages typed at a prompt with line editing; history stays in memory only
    (a history file would keep what you typed on disk in plaintext)."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import InMemoryHistory
    from prompt_toolkit.key_binding import KeyBindings

    keys = KeyBindings()

    @keys.add("escape", "enter")
    def _newline(event):
        event.current_buffer.insert_text("\n")

    @keys.add("enter")
    def _submit(event):
        event.current_buffer.validate_and_handle()

    prompt: PromptSession[str] = PromptSession(history=InMemoryHistory(), multiline=True,
                                               key_bindings=keys)
    err("memos chat: /help for commands, Ctrl-D to leave")
    while True:
        try:
            yield prompt.prompt("you> ")
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt clears the line
        except EOFError:
            return


@app.command(rich_help_panel="Chat")
def ask(
    question: str = typer.Argument(..., help="The question; piped stdin is added to it."),
    no_stream: bool = typer.Option(False, "--no-stream", help="Print the answer when complete."),
    as_json: bool = typer.Option(False, "--json",
                                 help="Print {answer, memories_used, memories_changed}."),
    no_learn: bool = MODEL_FLAGS["no_learn"],
    no_memory: bool = MODEL_FLAGS["no_memory"],
    offline: bool = MODEL_FLAGS["offline"],
    model: Optional[str] = MODEL_FLAGS["model"],
    base_url: Optional[str] = MODEL_FLAGS["base_url"],
    preset: Optional[str] = MODEL_FLAGS["preset"],
) -> None:
    """Ask one question, for scripts: git diff | memos ask "review this".

    Examples:

      memos ask "what do I usually order at the Thai place?"

      git diff | memos ask "review this change" --json
    """
    stdin_text = None if stdin_is_terminal() else (read_stdin() or None)
    _eng, session = _new_session(no_learn, no_memory, offline, model, base_url, preset)
    chunks = session.respond(question, stdin_text)
    if as_json or no_stream:
        answer = "".join(chunks)
    else:
        _render(chunks)
        answer = session.last.text
    session.after_answer(question, stdin_text, background=False)
    changed = [c for changes in session.learned for c in changes.ids]
    _report_learning(session)
    if as_json:
        print_json({"answer": answer,
                    "memories_used": [{"id": m.id, "text": m.text} for m in session.last.memories_used],
                    "memories_changed": changed})
    elif no_stream:
        print(answer)


@app.command(rich_help_panel="Chat")
def models(
    model: Optional[str] = MODEL_FLAGS["model"],
    base_url: Optional[str] = MODEL_FLAGS["base_url"],
    preset: Optional[str] = MODEL_FLAGS["preset"],
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the models the configured server offers."""
    from memos_cli.core.config import llm_settings
    from memos_cli.core.plugins import chat_factory

    eng = engine()
    flags = {"model": model, "base_url": base_url, "preset": preset}
    stored_key = eng.secret("llm.api_key")
    try:  # the configured model's provider lists its models
        settings = llm_settings(eng.paths, flags, stored_key=stored_key)
    except UsageError:  # a server but no model yet: listing is how one is chosen
        settings = None
    if settings is None:  # listing needs a server, not a model: a placeholder name will do
        settings = llm_settings(eng.paths, {**flags, "model": "(listing)"}, stored_key=stored_key)
    if settings is None or (settings.base_url is None and not settings.api_key):
        raise ModelError("no model server is configured: memos config set llm.preset ollama "
                         "(or llm.base_url URL, or an OpenAI API key)")
    factory, name = chat_factory(settings.model)
    names = factory(name, settings).models()
    if as_json:
        print_json(names)
    else:
        print("\n".join(names))
