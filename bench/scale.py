"""Speed at scale: import throughput, recall latency, cold start, memory and disk use.

Builds stores of generated personal sentences (fixed seed; made up here, not copied
from anywhere) of each size, in a fresh memos home each, and reports for each size:
bulk import throughput, warm in-process recall latency, the wall time of a cold
`memos recall`, `memos remember` and `memos list -n 10` in a new process (median of
``--runs``) with a breakdown of where a recall goes, peak RSS, and bytes on disk per
memory. Also the wall time of `memos --help` and `memos --version`.

The floors come from the same run, on the same store: `python -c "import chromadb"`,
and a raw Chroma cold query (a new process that imports chromadb, opens the
PersistentClient on the store's folder and makes one query with a stored vector).
Issue 12's targets are ratios to them: cold recall at the largest size over the raw
query there, and cold remember at the largest size over the smallest.

    python bench/scale.py [--sizes 1000,10000,100000] [--queries 50] [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._report import machine, percentiles_ms, table, temporary_home
from memos_cli.core.memory import Memory, new_id

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
    from memos_cli.core.timeparse import now_utc, to_iso

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


RAW_CHROMA = r"""
import json, sys
import chromadb
from chromadb.config import Settings
client = chromadb.PersistentClient(path=sys.argv[1], settings=Settings(anonymized_telemetry=False))
collection = client.get_collection(sys.argv[2])
collection.query(query_embeddings=[json.loads(sys.argv[3])], n_results=10)
"""


def quiet_env() -> dict[str, str]:
    # No background consolidation: a remember past its threshold would start one, which
    # then runs beside (and slows) every measurement after it. No agent: these are the
    # cold commands (bench/agent.py measures the agent, on the same store).
    return {**os.environ, "MEMOS_NO_AUTO_CONSOLIDATE": "1", "MEMOS_NO_AGENT": "1"}


def median_wall(argv: list[str], runs: int) -> float:
    """Median whole-process wall time of ``argv`` (each run a new process)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env=quiet_env(), check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 3)


def floors(home: Path, runs: int) -> dict:
    """`import chromadb`, and a raw Chroma cold query on this store, as new processes."""
    from memos_cli.engine import MemoryEngine

    with MemoryEngine().unit(write=False) as work:  # (this process's one Chroma client)
        assert work is not None
        name = work.store.collection_name
        vector = work.store.collection.get(limit=1, include=["embeddings"])["embeddings"][0]
    return {"import_chromadb_s": median_wall([sys.executable, "-c", "import chromadb"], runs),
            "raw_chroma_query_s": median_wall(
                [sys.executable, "-c", RAW_CHROMA, str(home / "data" / "chroma"), name,
                 json.dumps([float(x) for x in vector])], runs)}


def cold_commands(runs: int) -> dict:
    """Whole-process wall time (median of ``runs``) of the commands issue 12 measures."""
    memos = [sys.executable, "-m", "memos_cli"]
    remember = []
    for n in range(runs):  # each a new text (in every run of the bench), so each is stored
        text = f"Cold remember number {n} ({os.urandom(4).hex()}) about the garden shed"
        started = time.perf_counter()
        subprocess.run([*memos, "remember", text],
                       env=quiet_env(), check=True, capture_output=True, cwd=ROOT)
        remember.append(time.perf_counter() - started)
    return {"recall_s": median_wall([*memos, "recall", QUERIES[0]], runs),
            "remember_s": round(statistics.median(remember), 3),
            "list_10_s": median_wall([*memos, "list", "-n", "10"], runs)}


def cold_recall() -> dict:
    """A new `memos recall` process: wall time, and a probe's breakdown of the same steps."""
    env = quiet_env()
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
                       capture_output=True, cwd=ROOT, env=quiet_env())
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


def disk_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in (home / "data").rglob("*") if p.is_file())


def run(sizes: list[int], queries: int, runs: int) -> dict:
    from bench.agent import with_agent  # (it imports this module)

    results: dict = {"machine": machine(), "load": os.getloadavg(), "sizes": {}}
    for size in sizes:
        with temporary_home() as home:
            seconds, rate = build(size)
            results["sizes"][str(size)] = {
                "import_s": round(seconds, 2), "import_per_s": round(rate, 1),
                "warm_recall_ms": warm_recall(queries), "cold_recall": cold_recall(),
                "bytes_per_memory": round(disk_bytes(home) / size),
                "peak_rss_mb_this_process": round(
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "floors": floors(home, runs), "cold": cold_commands(runs),
                "agent": with_agent(runs)}
    results["help_s"] = command_wall("--help")
    results["version_s"] = command_wall("--version")
    results["ratios"] = ratios(results["sizes"])
    results["load_after"] = os.getloadavg()
    return results


def run_existing(home: Path, runs: int, queries: int) -> dict:
    """The cold measures on a store built before (``--existing HOME``), which is changed:
    each cold remember adds a memory. For sizes that take long to build."""
    from memos_cli.engine import MemoryEngine

    os.environ.update(MEMOS_HOME=str(home), MEMOS_KEYRING="0")
    with MemoryEngine().unit(write=False) as work:
        assert work is not None
        size = work.store.count()
    from bench.agent import with_agent

    results: dict = {"machine": machine(), "load": os.getloadavg(), "sizes": {str(size): {
        "floors": floors(home, runs), "cold": cold_commands(runs),
        "warm_recall_ms": warm_recall(queries), "agent": with_agent(runs)}}}
    results["ratios"] = {}
    results["load_after"] = os.getloadavg()
    return results


def ratios(by_size: dict) -> dict:
    """Issue 12's no-agent targets: each <= 1.3."""
    small, large = by_size[min(by_size, key=int)], by_size[max(by_size, key=int)]
    biggest, smallest = max(by_size, key=int), min(by_size, key=int)
    return {f"cold recall at {biggest} / raw Chroma query at {biggest}": round(
                large["cold"]["recall_s"] / large["floors"]["raw_chroma_query_s"], 2),
            f"cold remember at {biggest} / at {smallest}": round(
                large["cold"]["remember_s"] / small["cold"]["remember_s"], 2)}


def render(result: dict) -> str:
    rows = []
    for size, r in result["sizes"].items():
        if "import_per_s" not in r:  # --existing: no build, no cold-recall breakdown
            rows.append([size, "-", r["warm_recall_ms"]["p50"], r["warm_recall_ms"]["p95"],
                         "-", "-", "-"])
            continue
        rows.append([size, r["import_per_s"], r["warm_recall_ms"]["p50"], r["warm_recall_ms"]["p95"],
                     r["cold_recall"]["wall_s"], r["bytes_per_memory"],
                     r["peak_rss_mb_this_process"]])
    out = [table(["memories", "import/s", "warm p50 ms", "warm p95 ms", "cold recall s",
                  "bytes/memory", "peak RSS MB"], rows), ""]
    for size, r in result["sizes"].items():
        if "cold_recall" not in r:
            continue
        steps = ", ".join(f"{k} {v:.3f}s" for k, v in r["cold_recall"]["breakdown_s"].items())
        out.append(f"cold recall at {size}: {steps}")
    out.append("")
    rows = [[size, r["floors"]["import_chromadb_s"], r["floors"]["raw_chroma_query_s"],
             r["cold"]["recall_s"], r["cold"]["remember_s"], r["cold"]["list_10_s"]]
            for size, r in result["sizes"].items()]
    out.append(table(["memories", "import chromadb s", "raw Chroma query s", "cold recall s",
                      "cold remember s", "cold list -n 10 s"], rows))
    out.append("(whole processes, median of each; floors measured on the same store)")
    out.extend(f"{name}: {value}" for name, value in result["ratios"].items())
    out.append("")
    from bench.agent import render_size

    out.extend(render_size(size, r["agent"]) for size, r in result["sizes"].items() if "agent" in r)
    if "help_s" in result:
        out.append(f"memos --help {result['help_s']} s, memos --version {result['version_s']} s "
                   "(best of 5)")
    out.append(f"machine: {result['machine']}; load average before "
               f"{result['load'][0]:.2f}, after {result['load_after'][0]:.2f}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5, help="runs per cold command (median)")
    parser.add_argument("--existing", type=Path, help="measure the cold commands on this "
                        "MEMOS_HOME (built before) instead of building stores")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.existing:
        result = run_existing(args.existing.resolve(), args.runs, args.queries)
    else:
        result = run([int(s) for s in args.sizes.split(",")], args.queries, args.runs)
    print(json.dumps(result, indent=2) if args.json else render(result))


if __name__ == "__main__":
    main()
