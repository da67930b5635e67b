"""The resident agent's speed: whole-process wall time of memos commands with a warm agent,
without one (``--no-agent``), and the floor issue 12 measures them against
(``python -c "import chromadb"``), interleaved round by round in one run so that the
machine's load falls on all of them alike. Also: the first command after the agent
starts against a cold in-process one, and the agent's resident memory.

    python bench/agent.py [--sizes 1000,10000] [--rounds 15] [--json]

bench/scale.py runs the same measures (``with_agent``) on each of its stores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._report import machine, table, temporary_home
from bench.scale import QUERIES, build, quiet_env

MEMOS = [sys.executable, "-m", "memos_cli"]
RUN = os.urandom(4).hex()
COMMANDS = {"recall": lambda n: ["recall", QUERIES[n % len(QUERIES)]],
            # A new text in every run of the bench: a text already stored is not added again.
            "remember": lambda n: ["remember", f"Bench note {n} ({RUN}): the locker code is {n}"],
            "list -n 10": lambda n: ["list", "-n", "10"]}
TARGETS = {"recall": 0.15, "remember": 0.2, "list -n 10": 0.2}  # x import chromadb (issue 12)


def wall(argv: list[str], agent: bool = True) -> float:
    """Whole-process wall time of ``argv``, with the agent allowed or not (the caller's
    MEMOS_NO_AGENT, which the test suite sets, is overridden either way), as scale.py runs
    its cold commands (``quiet_env``)."""
    env = quiet_env()
    if agent:
        del env["MEMOS_NO_AGENT"]
    started = time.perf_counter()
    subprocess.run(argv, check=False, capture_output=True, env=env)
    return time.perf_counter() - started


def measure(rounds: int) -> dict:
    """Medians over ``rounds`` interleaved rounds (no-agent every third round: it is slow)."""
    times: dict[str, list[float]] = {"import chromadb": []}
    for n in range(rounds):
        times["import chromadb"].append(wall([sys.executable, "-c", "import chromadb"]))
        for name, argv in COMMANDS.items():
            times.setdefault(f"{name} (agent)", []).append(wall([*MEMOS, *argv(n)]))
            if n % 3 == 0:
                times.setdefault(f"{name} (no agent)", []).append(
                    wall([*MEMOS, *argv(n + 10_000)], agent=False))
    return {name: round(statistics.median(values), 3) for name, values in times.items()}


def first_command(runs: int) -> dict:
    """The first recall after the agent starts (it starts on demand) and a cold in-process
    one, alternating, ``runs`` of each."""
    first, cold = [], []
    for _ in range(runs):
        wall([*MEMOS, "agent", "stop"])
        first.append(wall([*MEMOS, "recall", QUERIES[0]]))
        cold.append(wall([*MEMOS, "recall", QUERIES[0]], agent=False))
    return {"first after start": round(statistics.median(first), 3),
            "cold in-process": round(statistics.median(cold), 3)}


def agent_rss_mb() -> float:
    status = json.loads(subprocess.run([*MEMOS, "agent", "status", "--json"], capture_output=True,
                                       text=True, check=True).stdout)
    for line in Path(f"/proc/{status['pid']}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def with_agent(rounds: int) -> dict:
    """Everything above, on the store of the current MEMOS_HOME, with an agent of its
    own (in a private runtime folder), stopped at the end."""
    saved = os.environ.get("XDG_RUNTIME_DIR")
    with tempfile.TemporaryDirectory(prefix="ma", dir="/tmp") as run_dir:
        os.environ["XDG_RUNTIME_DIR"] = run_dir
        try:
            starts = first_command(min(rounds, 3))
            wall([*MEMOS, "agent", "start"])
            wall([*MEMOS, "recall", "warm up"])
            return {"wall_s": measure(rounds), "first_s": starts, "agent_rss_mb": agent_rss_mb()}
        finally:
            wall([*MEMOS, "agent", "stop"])
            if saved is None:
                os.environ.pop("XDG_RUNTIME_DIR", None)
            else:
                os.environ["XDG_RUNTIME_DIR"] = saved


def run(sizes: list[int], rounds: int) -> dict:
    results: dict = {"machine": machine(), "load": os.getloadavg(), "sizes": {}}
    for size in sizes:
        with temporary_home():
            build(size)
            results["sizes"][str(size)] = with_agent(rounds)
    return results


def render(result: dict) -> str:
    out = [render_size(size, r) for size, r in result["sizes"].items()]
    out.append(f"machine: {result['machine']}; load average at start "
               f"{', '.join(f'{x:.1f}' for x in result['load'])}")
    return "\n".join(out)


def render_size(size: str, r: dict) -> str:
    walls, floor = r["wall_s"], r["wall_s"]["import chromadb"]
    rows = [[name, walls[f"{name} (agent)"], walls[f"{name} (no agent)"],
             round(walls[f"{name} (agent)"] / floor, 3), f"<= {TARGETS[name]}"]
            for name in COMMANDS]
    return "\n".join([
        f"{size} memories, with the agent: import chromadb {floor:.3f} s; agent RSS "
        f"{r['agent_rss_mb']} MB; first recall after start {r['first_s']['first after start']:.3f}"
        f" s vs cold in-process {r['first_s']['cold in-process']:.3f} s",
        table(["command", "agent s", "no agent s", "agent / import chromadb", "target"], rows), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run([int(s) for s in args.sizes.split(",")], args.rounds)
    print(json.dumps(result, indent=2) if args.json else render(result))


if __name__ == "__main__":
    main()
