"""The command line: a thin Typer layer over the library.

Modules here parse arguments, call ``memos_cli.engine`` and friends, and print.
They never touch Chroma or key material directly, and they alone turn typed
errors into messages on stderr and exit codes (see ``app.run``).
"""
