"""Concurrent writers and readers on one store, with default settings (issue 10, item 8).

Starts W writer threads, each running ``memos remember`` N times in a row as real
processes, and R reader threads running ``memos recall`` in a loop until the writers
are done; all against one fresh store in key-file mode, with the default lock timeout
and background consolidation on (its default: after 200 new memories). Reports every
exit code, whether each memory was stored exactly once, and command latencies.

    python bench/concurrency.py [--writers 8] [--each 50] [--readers 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._report import machine, percentiles_ms, table, temporary_home

MEMOS = [sys.executable, "-m", "memos_cli"]


def text_for(writer: int, number: int) -> str:
    return f"writer {writer} wrote note number {number} about the allotment"


def run(writers: int, each: int, readers: int, env: dict[str, str]) -> dict:
    """One concurrent run in the MEMOS_HOME of ``env``; the result as a dict."""
    outcomes: list[tuple[str, int, float]] = []  # (command, exit code, seconds)
    lock = threading.Lock()
    done = threading.Event()

    def memos(*args: str) -> None:
        start = time.perf_counter()
        proc = subprocess.run([*MEMOS, *args], capture_output=True, text=True, env=env)
        with lock:
            outcomes.append((args[0], proc.returncode, time.perf_counter() - start))

    def write(writer: int) -> None:
        for number in range(each):
            memos("remember", text_for(writer, number))

    def read() -> None:
        while not done.is_set():
            memos("recall", "what did I write about the allotment", "--limit", "3")

    start = time.perf_counter()
    reading = [threading.Thread(target=read) for _ in range(readers)]
    writing = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in reading + writing:
        thread.start()
    for thread in writing:
        thread.join()
    done.set()
    for thread in reading:
        thread.join()
    wall = time.perf_counter() - start
    listed = subprocess.run([*MEMOS, "list", "--all", "--json"], capture_output=True,
                            text=True, env=env, check=True)
    stored = Counter(m["text"] for m in json.loads(listed.stdout))
    wanted = [text_for(w, n) for w in range(writers) for n in range(each)]
    by_command = {}
    for command in ("remember", "recall"):
        runs = [(code, secs) for name, code, secs in outcomes if name == command]
        by_command[command] = {
            "runs": len(runs), "exit_codes": dict(Counter(str(code) for code, _ in runs)),
            "latency_ms": percentiles_ms([secs for _, secs in runs]),
            "max_ms": round(max((secs for _, secs in runs), default=0) * 1000, 1)}
    return {"machine": machine(), "writers": writers, "each": each, "readers": readers,
            "wall_s": round(wall, 1), "commands": by_command,
            "stored_once": sum(stored[t] == 1 for t in wanted),
            "missing": sum(stored[t] == 0 for t in wanted),
            "duplicated": sum(stored[t] > 1 for t in wanted)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--each", type=int, default=50)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
    args = parser.parse_args()
    with temporary_home():
        env = {k: v for k, v in os.environ.items()
               if k not in ("MEMOS_LOCK_TIMEOUT", "MEMOS_NO_AUTO_CONSOLIDATE", "MEMOS_PASSPHRASE")}
        subprocess.run([*MEMOS, "remember", "the store exists before the writers start"],
                       capture_output=True, env=env, check=True)
        result = run(args.writers, args.each, args.readers, env)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{result['machine']}: {args.writers} writers x {args.each}, {args.readers} "
          f"recall loops, {result['wall_s']} s")
    rows = [(name, c["runs"], json.dumps(c["exit_codes"]), c["latency_ms"]["p50"],
             c["latency_ms"]["p95"], c["max_ms"]) for name, c in result["commands"].items()]
    print(table(["command", "runs", "exit codes", "p50 ms", "p95 ms", "max ms"], rows))
    print(f"stored once: {result['stored_once']}, missing: {result['missing']}, "
          f"duplicated: {result['duplicated']}")


if __name__ == "__main__":
    main()
