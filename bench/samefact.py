"""Which look-alike memories would consolidation merge? The old rule and the new, side by side.

The labelled pairs (tests/data/same_fact_pairs.tsv) are embedded with the shipped
model. The old rule merged any pair with cosine >= 0.92; the new one merges only
equal statement keys (memos_cli/core/sameness.py), whatever the cosine. For each rule:
how many different facts it would merge (must be 0) and how many facts said twice.

    python bench/samefact.py [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._report import machine, table
from memos_cli.search.embedding import LocalMiniLM
from memos_cli.core.sameness import anchors, same_statement

PAIRS_FILE = Path(__file__).resolve().parent.parent / "tests" / "data" / "same_fact_pairs.tsv"
OLD_THRESHOLD = 0.92


def load_pairs() -> list[tuple[str, str, str]]:
    lines = PAIRS_FILE.read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t")) for line in lines  # type: ignore[misc]
            if line.strip() and not line.startswith("#")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pairs = load_pairs()
    embedder = LocalMiniLM()
    firsts = embedder.embed([a for _, a, _ in pairs])
    seconds = embedder.embed([b for _, _, b in pairs])
    cosines = (firsts * seconds).sum(axis=1)
    rules = {
        f"old: cosine >= {OLD_THRESHOLD}": [bool(c >= OLD_THRESHOLD) for c in cosines],
        "new: same statement": [same_statement(a, b) for _, a, b in pairs],
        "new, model may be asked": [anchors(a) == anchors(b) and bool(c >= OLD_THRESHOLD)
                                    for (_, a, b), c in zip(pairs, cosines)],
    }
    counts = {label: sum(1 for lab, _, _ in pairs if lab == label) for label in ("different", "same")}
    results = []
    for name, merges in rules.items():
        wrong = sum(m for (label, _, _), m in zip(pairs, merges) if label == "different")
        right = sum(m for (label, _, _), m in zip(pairs, merges) if label == "same")
        results.append({"rule": name, "different_merged": wrong, "different": counts["different"],
                        "same_merged": right, "same": counts["same"],
                        "same_rate": round(right / counts["same"], 3)})
    if args.json:
        print(json.dumps({"machine": machine(), "results": results}, indent=2))
        return
    print(table(["rule", "different facts merged", "facts said twice merged", "rate"],
                [(r["rule"], f"{r['different_merged']}/{r['different']}",
                  f"{r['same_merged']}/{r['same']}", r["same_rate"]) for r in results]))
    print("\n('model may be asked': the pairs a configured model would be asked about; "
          "merged only if it answers 'same')")


if __name__ == "__main__":
    main()
