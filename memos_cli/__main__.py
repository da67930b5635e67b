"""``python -m memos_cli`` and the ``memos`` console script."""

from __future__ import annotations


def main() -> None:
    from memos_cli.cli.app import run

    run()


if __name__ == "__main__":
    main()
