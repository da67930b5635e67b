"""The ``memos`` Typer application: global options, and the one place errors become exit codes.

Commands live in the sibling modules and register themselves on ``app``. ``run``
maps every ``MemosError`` to its exit code with one line on stderr, Ctrl-C to 130,
and shows a traceback only with ``--debug`` / ``MEMOS_DEBUG=1`` (never locals).
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Callable, NoReturn, Optional

import typer
from typer.core import TyperArgument, TyperOption
from typer.exceptions import TyperException

from memos_cli.core import passphrase
from memos_cli import __version__
from memos_cli.core.errors import ExitCode, MemosError

app = typer.Typer(
    name="memos",
    help="A personal assistant that remembers: encrypted, local memories found by meaning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# Help reads like other Unix tools' (TEXT, INTEGER, QUERY), not Typer's <str>, <bool>, {query}.
_TYPE_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH",
               "datetime": "DATE"}
_typer_display_type = TyperOption.display_type


def _plain_type(self: TyperOption, ctx: Any) -> str | None:
    if self.metavar is not None:
        return self.metavar
    if self.is_flag:
        return None  # an on/off switch takes no value
    raw = str(_typer_display_type(self, ctx)).strip("<>")
    word = raw.split()[0].removeprefix("list[").rstrip("]") if raw else ""
    return _TYPE_WORDS.get(word, word.upper() or None)


def _argument_name(self: TyperArgument) -> str:
    return self.display_name_raw.upper() + ("..." if self.nargs != 1 else "")


def _argument_usage(self: TyperArgument) -> str:
    name = _argument_name(self)
    return name if self.required else f"[{name}]"


TyperOption.display_type_rich = _plain_type  # type: ignore[method-assign]
TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]
TyperArgument._rich_display_name = _argument_name  # type: ignore[method-assign]
TyperArgument._usage_display_name = _argument_usage  # type: ignore[method-assign]


@dataclass
class State:
    profile: Optional[str] = None
    store: Optional[str] = None
    debug: bool = False
    # Set by the resident agent (agent_server.py): engines kept open between commands.
    engines: Optional[Callable[[Optional[str], Optional[str]], Any]] = None


STATE = State()


def _version(value: bool) -> None:
    if value:
        print(f"memos {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    profile: Optional[str] = typer.Option(
        None, "--profile", "-p", envvar="MEMOS_PROFILE",
        help="Memory set to use (separate memories and key), e.g. work or personal."),
    store: Optional[str] = typer.Option(
        None, "--store", envvar="MEMOS_STORE",
        help="A Chroma server (http://host:port) instead of the local folder."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    no_agent: bool = typer.Option(
        False, "--no-agent",
        help="Run in this process, not in the resident agent (also MEMOS_NO_AGENT=1)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    STATE.profile = profile
    STATE.store = store
    STATE.debug = debug or os.environ.get("MEMOS_DEBUG") == "1"


def prompt_passphrase(prompt: str) -> str | None:
    """The profile's passphrase: from the environment, else asked on a terminal."""
    return passphrase.ask("MEMOS_PASSPHRASE", prompt)


def engine():
    """The engine for this invocation, with terminal-aware passphrase and notices."""
    from memos_cli.cli.output import err
    from memos_cli.engine import MemoryEngine

    if STATE.engines is not None:
        eng = STATE.engines(STATE.profile, STATE.store)
    else:
        # A new profile is not prompted for a passphrase: MEMOS_PASSPHRASE gives one, or the
        # key goes to the keyring or a key file (and 'memos key passphrase' adds one later).
        eng = MemoryEngine(STATE.profile, passphrase=prompt_passphrase,
                           new_passphrase=passphrase.profile_passphrase, notice=err,
                           store=STATE.store)
    eng.cause = f"command: memos {_command_path()}"
    return eng


def _command_path() -> str:
    """The running subcommand ("remember", "key rotate"), for the audit trail."""
    from typer._click.globals import get_current_context  # Typer vendors click

    context = get_current_context(silent=True)
    return context.command_path.split(" ", 1)[-1] if context is not None else "?"


def _register_commands() -> None:
    # Imported for their side effect of adding commands to ``app``.
    # The order here is the order of --help's panels.
    from memos_cli.cli import memory_cmds, transfer_cmds  # noqa: F401
    from memos_cli.cli import chat_cmds, lifecycle_cmds  # noqa: F401
    from memos_cli.cli import config_cmds  # noqa: F401
    from memos_cli.cli import key_cmds, backup_cmds, completion_cmds  # noqa: F401
    from memos_cli.cli import mcp_cmds, agent_cmds  # noqa: F401


def run(argv: list[str] | None = None) -> NoReturn:
    """Entry point: run the app and exit with the documented exit code."""
    _exit_now(invoke(argv))


def _exit_now(code: int) -> NoReturn:
    """End the process once what a finished command leaves to do is done: other threads
    joined, output flushed. The interpreter's teardown (a thousand modules, onnxruntime's
    session, Chroma's clients and their cache of vectors freed piece by piece) does
    nothing a command needs, and took 0.2-0.3 s of a cold command at 100k memories.

    Chroma's clients are not stopped either: every write has reached its files when its
    call returns (memos survives a kill at any point; see the journal), and a forget
    flushes and compacts before it returns (SECURITY.md). What stopping a client does
    besides, trimming Chroma's log of writes already applied, the next process does."""
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # the reader went away (| head), or it is closed
            pass
    os._exit(code)


def invoke(argv: list[str] | None = None) -> int:
    """Run the app and return its exit code (tests call this in-process)."""
    saved = os.umask(0o077)  # what memos and Chroma create is the user's alone, whatever umask
    try:
        return _invoke(argv)
    finally:
        os.umask(saved)


def _invoke(argv: list[str] | None) -> int:
    _register_commands()
    if "_MEMOS_COMPLETE" in os.environ:
        # Teach click the completion protocol that Typer's generated scripts speak.
        from typer.completion import completion_init

        completion_init()
    bad = _non_utf8_argument(sys.argv[1:] if argv is None else argv)
    if bad is not None:
        print(f"memos: argument {bad} is not valid UTF-8 text", file=sys.stderr, flush=True)
        return ExitCode.USAGE
    command = _command()
    STATE.debug = os.environ.get("MEMOS_DEBUG") == "1"
    try:
        # Without standalone mode Typer returns the code of any Exit, and turns
        # Ctrl-C into Exit(130) itself; commands return None on success.
        code = command.main(args=argv, prog_name="memos", standalone_mode=False)
        code = code if isinstance(code, int) else ExitCode.OK
        if code == ExitCode.INTERRUPTED:
            print("memos: interrupted", file=sys.stderr, flush=True)
        return code
    except MemosError as exc:
        return _fail(exc, f"memos: {exc}", exc.exit_code)
    except typer.Exit as exc:
        return exc.exit_code
    except TyperException as exc:  # usage errors: bad flag, unknown command, missing argument
        show = getattr(exc, "show", None)
        show() if show else print(f"memos: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort) as exc:
        return _fail(exc, "memos: interrupted", ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (memos list | head): not an error worth a message.
        _silence_stdout()
        return ExitCode.OK
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            return _fail(exc, f"memos: unexpected error: {type(exc).__name__}: {exc}",
                         ExitCode.ERROR)
        # Adds are journalled: one that failed half-way is undone (now, or by the next
        # command), so remember and import failing means nothing was stored.
        return _fail(exc, f"memos: the disk is full ({exc.strerror}): free some space and "
                          "try again", ExitCode.ERROR)
    except SystemExit as exc:
        if isinstance(exc.__context__, BrokenPipeError):  # Typer's exit(1) for a closed pipe
            _silence_stdout()
            return ExitCode.OK
        raise
    except Exception as exc:  # a bug: say so in one line, trace with --debug
        return _fail(exc, f"memos: unexpected error: {type(exc).__name__}: {exc}",
                     ExitCode.ERROR)


def _non_utf8_argument(args: list[str]) -> int | None:
    """The 1-based position of the first argument that is not UTF-8 (Python passes such
    bytes on as lone surrogates, which fail far from here), or None."""
    for number, arg in enumerate(args, start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return number
    return None


def _command() -> Any:
    """The click command for ``app``, built once per help style: building it takes 20 ms,
    which the resident agent would otherwise pay at every command."""
    _plain_help_off_terminal(app)
    style = app.rich_markup_mode
    if style not in _COMMANDS:
        _COMMANDS[style] = typer.main.get_command(app)
    return _COMMANDS[style]


_COMMANDS: dict[Any, Any] = {}


def _plain_help_off_terminal(typer_app: typer.Typer) -> None:
    """Help as plain text (no boxes, no colour) when it goes to a pipe or a file, and as
    Typer draws it on a terminal (the agent runs commands for both in one process)."""
    typer_app.rich_markup_mode = _RICH_MARKUP if sys.stdout.isatty() else None
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _plain_help_off_terminal(group.typer_instance)


_RICH_MARKUP = app.rich_markup_mode


def _fail(exc: BaseException, message: str, code: int) -> int:
    if STATE.debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(message, file=sys.stderr, flush=True)
    return code


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
