"""memos: a command-line personal assistant that remembers, privately.

The package is a library first: ``memos_cli.engine.MemoryEngine`` is the entry
point for Python callers; ``memos_cli.cli`` is a thin Typer layer over it.
Importing this package is cheap: heavy modules (chromadb, onnxruntime, openai)
are imported only by the code paths that need them.
"""

__version__ = "0.1.0"
