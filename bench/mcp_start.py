"""How fast `memos mcp` answers `initialize`, as a desktop client sees it (process start included).

Each run starts `python -m memos_cli mcp` with the MCP SDK's own stdio client, in a
temporary memos home holding one memory, and times until `initialize` returns.

    python bench/mcp_start.py [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import Implementation

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._report import machine, percentiles_ms, table, temporary_home
from memos_cli.engine import MemoryEngine, NewMemory


async def _initialize_once() -> float:
    params = StdioServerParameters(command=sys.executable, args=["-m", "memos_cli", "mcp"],
                                   env=dict(os.environ))
    started = time.monotonic()
    with open(os.devnull, "w") as quiet:
        async with stdio_client(params, errlog=quiet) as (read, write):
            async with ClientSession(read, write,
                                     client_info=Implementation(name="bench", version="1")) as s:
                await s.initialize()
                return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with temporary_home():
        MemoryEngine().remember(NewMemory("the spare key is under the blue pot"))
        seconds = [anyio.run(_initialize_once) for _ in range(args.runs)]
    result = {"machine": machine(), "runs": args.runs,
              "initialize_ms": percentiles_ms(seconds), "max_ms": round(max(seconds) * 1000, 1)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(table(["runs", "p50 ms", "p95 ms", "max ms"],
                [(args.runs, result["initialize_ms"]["p50"], result["initialize_ms"]["p95"],
                  result["max_ms"])]))


if __name__ == "__main__":
    main()
