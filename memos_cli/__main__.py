"""``python -m memos_cli`` and the ``memos`` console script."""

from __future__ import annotations


def main() -> None:
    import os
    import sys

    from memos_cli.agent import client as agent_client

    from memos_cli.core import blas

    # First, and before anything heavy is imported: the resident agent may run it.
    code = agent_client.run(sys.argv[1:])
    if code is not None:
        sys.exit(code)

    blas.one_thread(os.environ)
    from memos_cli.cli.app import run

    run()


if __name__ == "__main__":
    main()
