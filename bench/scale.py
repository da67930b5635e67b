"""Speed at scale: import throughput, recall latency, cold start, memory and disk use.

Builds stores of generated personal sentences (fixed seed; made up here, not copied
from anywhere) of each size, in a fresh memos home each, and reports for each size:
bulk import throughput, warm in-process recall latency, the wall time of a cold
`memos recall` in a new process with a breakdown of where it goes, peak RSS, and
bytes on disk per memory. Also the wall time of `memos --help` and `memos --version`.

    python bench/scale.py [--sizes 1000,10000,100000] [--queries 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._report import machine, percentiles_ms, table, temporary_home
from memos_cli.memory import Memory, new_id

ROOT = Path(__file__).resolve().parent.parent

PEOPLE = ["Ana", "Ben", "Chloe", "Dev", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jonas",
          "Kemi", "Luca", "Mara", "Noor", "Oskar", "Priya", "Quinn", "Rosa", "Sami", "Tara"]
RELATIONS = ["sister", "brother", "neighbour", "colleague", "dentist", "landlord", "cousin",
             "manager", "friend from school", "running partner", "mother", "father"]
PLACES = ["Lisbon", "Leeds", "Kyoto", "Oaxaca", "Tallinn", "Nairobi", "Porto", "Quebec",
          "the lake house", "the office", "the old flat", "the climbing gym", "the market"]
THINGS = ["oat milk", "green tea", "sourdough", "the blue bike", "a Pixel phone", "jazz records",
          "the hiking boots", "a sewing machine", "board games", "a standing desk", "ramen"]
ACTIVITIES = ["bouldering", "swimming", "learning Spanish", "baking bread", "playing chess",
              "running the 10k", "painting watercolours", "fixing the boiler", "gardening"]
TIMES = ["on Monday", "last week", "in March", "every Sunday", "yesterday", "next Friday",
         "after work", "in the summer", "before the holidays", "at 7am"]
TEMPLATES = [
    "My {rel} {person} lives in {place}.",
    "{person} recommended {thing} {time}.",
    "I prefer {thing} over anything else when I'm tired.",
    "I started {activity} {time} with {person}.",
    "Remember to call {person} about {thing} {time}.",
    "{person} and I talked about moving to {place} {time}.",
    "The meeting with my {rel} is {time} at {place}.",
    "I don't like {activity} much, but {person} loves it.",
    "I lent {thing} to {person} {time}.",
    "{person}'s birthday party is {time} at {place}.",
    "I felt proud after {activity} {time}.",
    "My {rel} says {place} is lovely {time}.",
]
QUERIES = ["where does my sister live", "who recommended green tea", "what did I lend to Ben",
           "when is the party", "what do I think about bouldering", "moving abroad",
           "call about the boiler", "what do I prefer when tired", "meeting at the office",
           "learning Spanish with whom"]


def sentences(count: int, seed: int = 7) -> list[str]:
    """``count`` distinct, varied sentences; repeats of a combination get a note number."""
    rng = random.Random(seed)
    out, seen = [], set()
    for n in range(count):
        text = rng.choice(TEMPLATES).format(
            rel=rng.choice(RELATIONS), person=rng.choice(PEOPLE), place=rng.choice(PLACES),
            thing=rng.choice(THINGS), activity=rng.choice(ACTIVITIES), time=rng.choice(TIMES))
        if text in seen:
            text = f"{text} (note {n})"
        seen.add(text)
        out.append(text)
    return out


def build(count: int) -> tuple[float, float]:
    """Import ``count`` memories into the current home; (seconds, memories/s)."""
    from memos_cli.engine import MemoryEngine
    from memos_cli.timeparse import now_utc, to_iso

    now = to_iso(now_utc())
    memories = [Memory(id=new_id(), text=t, created_at=now, updated_at=now, source="import")
                for t in sentences(count)]
    engine = MemoryEngine()
    started = time.perf_counter()
    result = engine.import_memories(memories)
    seconds = time.perf_counter() - started
    assert result.added == count, result
    return seconds, count / seconds


def warm_recall(queries: int) -> dict:
    from memos_cli.engine import MemoryEngine

    engine = MemoryEngine()
    engine.recall("warm up", 10)
    times = []
    for n in range(queries):
        started = time.perf_counter()
        engine.recall(QUERIES[n % len(QUERIES)], 10)
        times.append(time.perf_counter() - started)
    return percentiles_ms(times)


COLD_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
from memos_cli.engine import MemoryEngine
import chromadb  # what a recall imports, so its cost is counted here
t1 = time.perf_counter()
engine = MemoryEngine()
engine.adopt_keys(engine.keys.unlock())
t2 = time.perf_counter()
engine.embedder.embed(["load"])
t3 = time.perf_counter()
with engine.unit(write=False) as work:
    work.keyword_index()
t4 = time.perf_counter()
engine.recall(sys.argv[1], 10)
t5 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "unlock": t2 - t1, "model load": t3 - t2,
                  "open store + keyword index": t4 - t3, "query": t5 - t4}))
"""


def cold_recall() -> dict:
    """A new `memos recall` process: wall time, and a probe's breakdown of the same steps."""
    env = dict(os.environ)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "memos_cli", "recall", QUERIES[0]], env=env,
                   check=True, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - started
    rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    interpreter = time.perf_counter() - started
    probe = subprocess.run([sys.executable, "-c", COLD_PROBE, QUERIES[0]], env=env, check=True,
                           capture_output=True, text=True, cwd=ROOT)
    steps = {"interpreter": interpreter, **json.loads(probe.stdout)}
    return {"wall_s": round(wall, 3), "breakdown_s": {k: round(v, 3) for k, v in steps.items()},
            "peak_rss_mb_cold_process_max": round(rss_kb / 1024, 1)}


def command_wall(*args: str, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "memos_cli", *args], check=True,
                       capture_output=True, cwd=ROOT)
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


def disk_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in (home / "data").rglob("*") if p.is_file())


def run(sizes: list[int], queries: int) -> dict:
    results = {"machine": machine(), "sizes": {}}
    for size in sizes:
        with temporary_home() as home:
            seconds, rate = build(size)
            results["sizes"][str(size)] = {
                "import_s": round(seconds, 2), "import_per_s": round(rate, 1),
                "warm_recall_ms": warm_recall(queries), "cold_recall": cold_recall(),
                "bytes_per_memory": round(disk_bytes(home) / size),
                "peak_rss_mb_this_process": round(
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    results["help_s"] = command_wall("--help")
    results["version_s"] = command_wall("--version")
    return results


def render(result: dict) -> str:
    rows = []
    for size, r in result["sizes"].items():
        rows.append([size, r["import_per_s"], r["warm_recall_ms"]["p50"], r["warm_recall_ms"]["p95"],
                     r["cold_recall"]["wall_s"], r["bytes_per_memory"],
                     r["peak_rss_mb_this_process"]])
    out = [table(["memories", "import/s", "warm p50 ms", "warm p95 ms", "cold recall s",
                  "bytes/memory", "peak RSS MB"], rows), ""]
    for size, r in result["sizes"].items():
        steps = ", ".join(f"{k} {v:.3f}s" for k, v in r["cold_recall"]["breakdown_s"].items())
        out.append(f"cold recall at {size}: {steps}")
    out.append(f"memos --help {result['help_s']} s, memos --version {result['version_s']} s "
               "(best of 5)")
    out.append(f"machine: {result['machine']}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run([int(s) for s in args.sizes.split(",")], args.queries)
    print(json.dumps(result, indent=2) if args.json else render(result))


if __name__ == "__main__":
    main()
