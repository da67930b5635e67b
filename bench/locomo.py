"""Recall quality on LoCoMo: does memos find the turns that answer each question?

For each conversation, into a fresh memos home, every turn is stored through the
library's own ``remember_many`` as "Speaker: text" (plus the shared photo's caption),
dated with its session's date, its dia_id kept as the source reference. Every
question then goes through ``MemoryEngine.recall`` with its defaults, and the
evidence turns are scored: recall@k, hit@k, nDCG@10, per category and overall.
Two baselines see the same turns in the same run: BM25 alone and dense vectors alone.
The dataset's observations and summaries are never read.

Recall is measured twice: with floor 0 (the ranking's quality: every candidate may be
shown) and with the configured relevance floor (what a user sees). Recall@k is also
reported for a tuning part and a held-out part of the conversations (TUNING below):
choices about recall are made on the tuning part only.

Abstention: each conversation's questions (categories 1-4) are also asked of the next
conversation's store, its speakers' names swapped in. Nothing there answers them, so a
good recall prints nothing above its floor; the share that does is reported, beside
the share of own-store questions whose evidence (found in the top 10 at floor 0) is
still shown above the floor. ``--floors`` adds other floors to compare.

    python bench/locomo.py [--data PATH] [--json] [--conversations N] [--questions N]
                           [--floors 0.25,0.35] [--embedder local|e5|e5-sym]

``--embedder`` swaps the built-in MiniLM for another offline model (bench/embedders.py),
for memos and the dense baseline alike.

``--expand`` also measures recall's optional model step (``recall --expand``): the chat
model configured in the environment (MEMOS_LLM_BASE_URL, MEMOS_LLM_MODEL, ...) words what
an answer may say, and memos searches with that beside the question. It is reported
apart from memos' own figures, which never use a model.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import embedders
from bench._report import machine, percentiles_ms, table, temporary_home
from memos_cli.core.config import RECALL_FLOOR
from memos_cli.engine import MemoryEngine, NewMemory
from memos_cli.search.embedding import embed_query
from memos_cli.search.keyword import K1, B, tokenize

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo" / "locomo-dev.json"
KS = (5, 10, 20, 50)
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
SYSTEMS = ("memos", "memos-floor", "bm25", "dense")
TUNING = ("conv-26", "conv-30", "conv-41")  # choices are made on these; the rest is held out
PARTS = {"tuning": "memos-tuning", "held-out": "memos-held-out"}  # floor 0, by part


@dataclass
class Turn:
    dia_id: str
    text: str
    when: datetime


@dataclass
class Question:
    text: str
    category: int
    evidence: list[str]


def swap_names(text: str, names: dict[str, str]) -> str:
    """The question with one conversation's speakers named as another's ("Caroline's" too)."""
    if not names:
        return text
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    return pattern.sub(lambda m: names[m[1]], text)


def speakers(sample: dict) -> tuple[str, str]:
    return sample["conversation"]["speaker_a"], sample["conversation"]["speaker_b"]


@dataclass
class Abstention:
    """Per part and floor: foreign questions answered with nothing; own evidence still shown.
    A foreign question belongs to the part of the store it is asked of."""

    silent: dict = field(default_factory=dict)  # (part, floor) -> [bool per foreign question]
    kept: dict = field(default_factory=dict)  # (part, floor) -> [bool per own question, evidence at floor 0]

    def summary(self) -> dict:
        floors = sorted({floor for _part, floor in self.silent})
        out = {f"{floor:g}": self._shares(floor, tuple(PARTS)) for floor in floors}
        out["parts"] = {part: {f"{floor:g}": self._shares(floor, (part,)) for floor in floors}
                        for part in PARTS}
        return out

    def _shares(self, floor: float, parts: tuple[str, ...]) -> dict:
        silent = [f for part in parts for f in self.silent.get((part, floor), [])]
        kept = [f for part in parts for f in self.kept.get((part, floor), [])]
        return {"foreign_answered_with_nothing": _share(silent), "own_evidence_kept": _share(kept),
                "foreign_questions": len(silent), "own_questions": len(kept)}


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


@dataclass
class Scores:
    """Per system and category, one list of per-question values for each metric."""

    values: dict = field(default_factory=dict)

    def add(self, system: str, category: int, ranked: list[str], evidence: list[str]) -> None:
        wanted = set(evidence)
        metrics = {}
        for k in KS:
            found = len(wanted & set(ranked[:k]))
            metrics[f"recall@{k}"] = found / len(wanted)
            metrics[f"hit@{k}"] = float(found > 0)
        metrics["ndcg@10"] = _ndcg(ranked[:10], wanted)
        for name, value in metrics.items():
            self.values.setdefault((system, category, name), []).append(value)

    def mean(self, system: str, categories: tuple[int, ...], metric: str) -> float:
        pooled = [v for c in categories for v in self.values.get((system, c, metric), [])]
        return float(np.mean(pooled)) if pooled else float("nan")

    def count(self, category: int) -> int:
        return len(self.values.get(("memos", category, "recall@10"), []))


def _ndcg(ranked: list[str], wanted: set[str]) -> float:
    gain = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked) if d in wanted)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(wanted), len(ranked))))
    return gain / ideal if ideal else 0.0


# --- the data -----------------------------------------------------------------------


def load_conversation(sample: dict) -> list[Turn]:
    conversation = sample["conversation"]
    sessions = sorted((k for k in conversation if re.fullmatch(r"session_\d+", k)),
                      key=lambda k: int(k.split("_")[1]))
    turns = []
    for key in sessions:
        when = _session_date(conversation.get(f"{key}_date_time", ""))
        for turn in conversation[key]:
            text = f"{turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                text += f" [shares a photo: {turn['blip_caption']}]"
            turns.append(Turn(turn["dia_id"], text, when))
    return turns


def _session_date(text: str) -> datetime:
    """'1:56 pm on 8 May, 2023' -> an aware datetime."""
    try:
        return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=timezone.utc)
    except ValueError:
        return datetime(2000, 1, 1, tzinfo=timezone.utc)


def load_questions(sample: dict, known: set[str], skipped: dict) -> list[Question]:
    questions = []
    for qa in sample["qa"]:
        evidence = _normalise_evidence(qa.get("evidence", []), known, skipped)
        if not evidence:
            skipped["no usable evidence"] = skipped.get("no usable evidence", 0) + 1
            continue
        questions.append(Question(qa["question"], int(qa["category"]), evidence))
    return questions


def _normalise_evidence(raw: list[str], known: set[str], skipped: dict) -> list[str]:
    """'D30:05' -> 'D30:5', 'D8:6; D9:17' split; ids naming no turn dropped (and counted)."""
    out = []
    for part in raw:
        for piece in re.split(r"[;,]", part):
            match = re.fullmatch(r"D(\d+):(\d+)", piece.strip())
            dia_id = f"D{int(match[1])}:{int(match[2])}" if match else None
            if dia_id in known:
                out.append(dia_id)
            else:
                skipped["evidence ids naming no turn"] = skipped.get("evidence ids naming no turn", 0) + 1
    return sorted(set(out))


# --- the optional model step ---------------------------------------------------------------


class Expansion:
    """Recall with a chat model's wordings of each question (``recall --expand``), scored
    as its own systems ("expand", "expand-floor", "expand-<part>"). The model is the one
    memos' settings name in the environment; each question is sent to it once per run."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {}
        self.seconds: list[float] = []
        self.silent: list[bool] = []  # foreign questions, default floor
        self.model_name = ""
        self._expand: Callable[[str], list[str]] | None = None  # made at the first question

    def _also(self, engine: MemoryEngine, question: str) -> list[str]:
        if question not in self.lines:
            expand = self._expand or self._expander(engine)
            started = time.perf_counter()
            self.lines[question] = expand(question)
            self.seconds.append(time.perf_counter() - started)
        return self.lines[question]

    def _expander(self, engine: MemoryEngine) -> Callable[[str], list[str]]:
        """One model (and its client) for the whole run: the environment names it."""
        from memos_cli.assistant.expansion import expander
        from memos_cli.assistant.llm import chat_model

        model = chat_model(engine.paths)
        if model is None:
            raise SystemExit("--expand needs a chat model: set MEMOS_LLM_BASE_URL and MEMOS_LLM_MODEL")
        self.model_name = model.name
        self._expand = expander(model)
        return self._expand

    def score(self, engine: MemoryEngine, q: Question, part: str, scores: Scores) -> None:
        also = self._also(engine, q.text)
        ranked = _refs(engine.recall(q.text, limit=max(KS), floor=0.0, record_access=False, also=also))
        for system in ("expand", f"expand-{part}"):
            scores.add(system, q.category, ranked, q.evidence)
        shown = engine.recall(q.text, limit=max(KS), floor=RECALL_FLOOR, record_access=False, also=also)
        scores.add("expand-floor", q.category, _refs(shown), q.evidence)

    def abstain(self, engine: MemoryEngine, question: str) -> None:
        also = self._also(engine, question)
        self.silent.append(not engine.recall(question, limit=1, record_access=False, also=also))

    def summary(self, scores: Scores) -> dict:
        core = (1, 2, 3, 4)
        return {
            "model": self.model_name,
            "recall_at": {str(k): round(scores.mean("expand", core, f"recall@{k}"), 4) for k in KS},
            "ndcg_at_10": round(scores.mean("expand", core, "ndcg@10"), 4),
            "by_category": {f"{c} {CATEGORIES[c]}": round(scores.mean("expand", (c,), "recall@10"), 4)
                            for c in CATEGORIES},
            "parts": {part: round(scores.mean(f"expand-{part}", core, "recall@10"), 4) for part in PARTS},
            "shown_recall_at_10": round(scores.mean("expand-floor", core, "recall@10"), 4),
            "foreign_answered_with_nothing": _share(self.silent),
            "no_usable_wording": _share([not lines for lines in self.lines.values()]),
            "model_seconds": percentiles_ms(self.seconds),
        }


# --- the baselines ----------------------------------------------------------------------


class PlainBM25:
    """BM25 over single turns, same tokenizer as memos, no neighbours, no fusion."""

    def __init__(self, texts: list[str]) -> None:
        self.docs = [tokenize(t) for t in texts]
        self.lengths = np.array([len(d) for d in self.docs], dtype=float)
        self.df: dict[str, int] = {}
        for doc in self.docs:
            for token in set(doc):
                self.df[token] = self.df.get(token, 0) + 1

    def rank(self, query: str) -> np.ndarray:
        n, avg = len(self.docs), self.lengths.mean()
        scores = np.zeros(n)
        for token in set(tokenize(query)):
            if token not in self.df:
                continue
            idf = math.log(1 + (n - self.df[token] + 0.5) / (self.df[token] + 0.5))
            for i, doc in enumerate(self.docs):
                tf = doc.count(token)
                if tf:
                    scores[i] += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * self.lengths[i] / avg))
        return np.argsort(-scores, kind="stable")


# --- the run ------------------------------------------------------------------------------


def run(data: Path, conversations: int | None, question_cap: int | None,
        turn_cap: int | None, floors: tuple[float, ...] = (), embedder_name: str = "local",
        expand: bool = False) -> dict:
    samples = json.loads(data.read_text())[:conversations]
    embedder = embedders.make(embedder_name)
    scores, abstention = Scores(), Abstention()
    expansion = Expansion() if expand else None
    skipped: dict[str, int] = {}
    floors = tuple(sorted({RECALL_FLOOR, *floors}))
    ingest_seconds, turns_total, latencies = 0.0, 0, []
    for n, sample in enumerate(samples):
        turns = load_conversation(sample)[:turn_cap]
        questions = load_questions(sample, {t.dia_id for t in turns}, skipped)[:question_cap]
        part_name = "tuning" if sample["sample_id"] in TUNING else "held-out"
        part = PARTS[part_name]
        with temporary_home():
            engine = MemoryEngine(embedder=embedder)
            started = time.perf_counter()
            results = engine.remember_many([
                NewMemory(t.text, kind="episode", occurred_at=t.when, source="import",
                          source_ref=t.dia_id) for t in turns])
            ingest_seconds += time.perf_counter() - started
            turns_total += len(turns)
            merged = sum(not r.created for r in results)
            if merged:
                skipped["turns repeating an earlier turn's exact text (stored once)"] = \
                    skipped.get("turns repeating an earlier turn's exact text (stored once)", 0) + merged
            engine.recall("warm-up", 1)  # loads the keyword index: not part of a question's time
            for q in questions:
                started = time.perf_counter()
                ranked = _refs(engine.recall(q.text, limit=max(KS), floor=0.0))
                latencies.append(time.perf_counter() - started)
                for system in ("memos", part):
                    scores.add(system, q.category, ranked, q.evidence)
                scores.add("memos-floor", q.category,
                           _refs(engine.recall(q.text, limit=max(KS), floor=RECALL_FLOOR,
                                               record_access=False)), q.evidence)
                if expansion is not None:
                    expansion.score(engine, q, part_name, scores)
                if q.category != 5 and set(q.evidence) & set(ranked[:10]):
                    for floor in floors:
                        shown = _refs(engine.recall(q.text, limit=10, floor=floor, record_access=False))
                        found = bool(set(q.evidence) & set(shown))
                        abstention.kept.setdefault((part_name, floor), []).append(found)
            if len(samples) > 1:  # the previous conversation's questions, asked of this store
                _abstain(engine, samples[n - 1], sample, question_cap, floors, abstention, part_name,
                         expansion)
        _baselines(turns, questions, embedder, scores)
    result = _summary(scores, skipped, turns_total, ingest_seconds, latencies, data, abstention)
    if expansion is not None:
        result["expanded"] = expansion.summary(scores)
    return {"embedder": embedder.model_id, **result}


def _refs(hits: list) -> list[str]:
    return [h.memory.source_ref for h in hits]


def _abstain(engine: MemoryEngine, foreign: dict, own: dict, question_cap: int | None,
             floors: tuple[float, ...], abstention: Abstention, part: str,
             expansion: "Expansion | None" = None) -> None:
    """Ask ``own``'s store the questions of ``foreign``, its speakers renamed to ``own``'s
    (and, with ``expansion``, once more with the model's wordings)."""
    names = dict(zip(speakers(foreign), speakers(own)))
    known = {t.dia_id for t in load_conversation(foreign)}
    questions = [q for q in load_questions(foreign, known, {}) if q.category != 5][:question_cap]
    for q in questions:
        text = swap_names(q.text, names)
        silent = False
        for floor in floors:  # ascending: nothing above one floor is nothing above a higher
            # One memory above the floor is enough to answer: limit 1 stops at the first.
            silent = silent or not engine.recall(text, limit=1, floor=floor, record_access=False)
            abstention.silent.setdefault((part, floor), []).append(silent)
        if expansion is not None:
            expansion.abstain(engine, text)


def _baselines(turns: list[Turn], questions: list[Question], embedder, scores: Scores) -> None:
    ids = [t.dia_id for t in turns]
    bm25 = PlainBM25([t.text for t in turns])
    vectors = embedder.embed([t.text for t in turns])
    for q in questions:
        scores.add("bm25", q.category, [ids[i] for i in bm25.rank(q.text)[:max(KS)]], q.evidence)
        similarity = vectors @ embed_query(embedder, [q.text])[0]
        dense = np.argsort(-similarity, kind="stable")[:max(KS)]
        scores.add("dense", q.category, [ids[i] for i in dense], q.evidence)


def _summary(scores: Scores, skipped: dict, turns: int, ingest_s: float, latencies: list,
             data: Path, abstention: Abstention) -> dict:
    core, every = (1, 2, 3, 4), (1, 2, 3, 4, 5)
    return {
        "data": str(data), "machine": machine(), "floor": RECALL_FLOOR,
        "questions": {CATEGORIES[c]: scores.count(c) for c in every},
        "recall_at": {str(k): round(scores.mean("memos", core, f"recall@{k}"), 4) for k in KS},
        "recall_at_1_5": {str(k): round(scores.mean("memos", every, f"recall@{k}"), 4) for k in KS},
        "hit_at": {str(k): round(scores.mean("memos", core, f"hit@{k}"), 4) for k in KS},
        "ndcg_at_10": round(scores.mean("memos", core, "ndcg@10"), 4),
        "by_category": {
            f"{c} {CATEGORIES[c]}": {
                system: {m: round(scores.mean(system, (c,), m), 4)
                         for m in ("recall@5", "recall@10", "recall@20", "recall@50",
                                   "hit@10", "ndcg@10")}
                for system in SYSTEMS}
            for c in every},
        "baselines": {
            system: {"recall_at": {str(k): round(scores.mean(system, core, f"recall@{k}"), 4)
                                   for k in KS},
                     "ndcg_at_10": round(scores.mean(system, core, "ndcg@10"), 4)}
            for system in ("bm25", "dense")},
        "shown": {"recall_at": {str(k): round(scores.mean("memos-floor", core, f"recall@{k}"), 4)
                                for k in KS},
                  "ndcg_at_10": round(scores.mean("memos-floor", core, "ndcg@10"), 4)},
        "parts": {
            name: {"conversations": list(TUNING) if name == "tuning" else "the others",
                   "recall@10": round(scores.mean(system, core, "recall@10"), 4),
                   "by_category": {f"{c} {CATEGORIES[c]}": round(scores.mean(system, (c,), "recall@10"), 4)
                                   for c in core}}
            for name, system in PARTS.items()},
        "abstention": abstention.summary(),
        "latency_ms": percentiles_ms(latencies),
        "ingest_turns_per_s": round(turns / ingest_s, 1) if ingest_s else None,
        "skipped": skipped,
    }


def render(result: dict) -> str:
    core = result["recall_at"]
    rows = [["memos, floor 0 (ranking)"] + [core[str(k)] for k in KS] + [result["ndcg_at_10"], "1.00"]]
    for system, label in (("memos-floor", f"memos, floor {result['floor']:g} (shown)"),
                          ("bm25", "BM25 alone"), ("dense", "dense alone")):
        base = result["shown"] if system == "memos-floor" else result["baselines"][system]
        ratio = core["10"] / base["recall_at"]["10"] if base["recall_at"]["10"] else float("nan")
        rows.append([label] + [base["recall_at"][str(k)] for k in KS] + [base["ndcg_at_10"],
                                                                          f"memos x{ratio:.2f}"])
    out = [f"LoCoMo evidence recall, categories 1-4 ({result['data']}; "
           f"embedder {result['embedder']})", "",
           table(["system"] + [f"R@{k}" for k in KS] + ["nDCG@10", "R@10 ratio"], rows), ""]
    cat_rows = []
    for name, systems in result["by_category"].items():
        m, f, b, d = (systems[s]["recall@10"] for s in SYSTEMS)
        count = result["questions"][name.split(" ", 1)[1]]
        cat_rows.append([name, count, m, f, b, d, f"x{m / b:.2f}" if b else "-"])
    out += ["Recall@10 by category (the dataset's numbering)", "",
            table(["category", "questions", "memos", "memos>floor", "BM25", "dense", "memos/BM25"],
                  cat_rows), ""]
    part_rows = [[name, part["recall@10"], *part["by_category"].values()]
                 for name, part in result["parts"].items()]
    out += ["Recall@10 at floor 0, tuning and held-out conversations", "",
            table(["part", "1-4", *[c for c in result["by_category"] if not c.startswith("5")]],
                  part_rows), ""]
    if result["abstention"]:
        parts = {"all": result["abstention"], **result["abstention"]["parts"]}
        rows = [[floor, name, a["foreign_answered_with_nothing"], a["own_evidence_kept"]]
                for name, by_floor in parts.items()
                for floor, a in by_floor.items() if floor != "parts"]
        out += ["Abstention: questions asked of another conversation (names swapped)", "",
                table(["floor", "stores", "foreign: nothing shown", "own: evidence still shown"],
                      rows), ""]
    if "expanded" in result:
        out += _render_expanded(result)
    out.append(f"categories 1-5, memos R@10: {result['recall_at_1_5']['10']:.3f}")
    out.append(f"ingest: {result['ingest_turns_per_s']} turns/s; recall latency p50 "
               f"{result['latency_ms']['p50']} ms, p95 {result['latency_ms']['p95']} ms")
    out.append(f"skipped: {json.dumps(result['skipped'])}")
    out.append(f"machine: {result['machine']}")
    return "\n".join(out)


def _render_expanded(result: dict) -> list[str]:
    x = result["expanded"]
    abstention = result["abstention"].get(f"{result['floor']:g}", {})
    own = {**{f"R@{k}": result["recall_at"][str(k)] for k in KS},
           **{name: result["by_category"][name]["memos"]["recall@10"] for name in x["by_category"]},
           **{f"{part} R@10": result["parts"][part]["recall@10"] for part in PARTS},
           "shown R@10": result["shown"]["recall_at"]["10"],
           "foreign: nothing shown": abstention.get("foreign_answered_with_nothing")}
    theirs = {**{f"R@{k}": x["recall_at"][str(k)] for k in KS}, **x["by_category"],
              **{f"{part} R@10": x["parts"][part] for part in PARTS},
              "shown R@10": x["shown_recall_at_10"],
              "foreign: nothing shown": x["foreign_answered_with_nothing"]}
    rows = [[name, own[name], theirs[name]] for name in own]
    return [f"The optional model step (recall --expand, model {x['model']}), floor 0 unless named", "",
            table(["measure", "memos", "memos --expand"], rows), "",
            f"questions with no usable wording from the model: {x['no_usable_wording']}; "
            f"model time p50 {x['model_seconds']['p50']} ms, p95 {x['model_seconds']['p95']} ms", ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--conversations", type=int, help="only the first N conversations")
    parser.add_argument("--questions", type=int, help="at most N questions per conversation")
    parser.add_argument("--turns", type=int, help="at most N turns per conversation")
    parser.add_argument("--floors", default="", help="more relevance floors for the abstention "
                        "measure, comma-separated (the default floor is always measured)")
    parser.add_argument("--embedder", choices=embedders.NAMES, default="local",
                        help="the embedding model for memos and the dense baseline "
                        "(bench/embedders.py; default: memos' built-in MiniLM)")
    parser.add_argument("--expand", action="store_true",
                        help="also measure recall --expand with the chat model memos' settings "
                        "name in the environment (MEMOS_LLM_BASE_URL, MEMOS_LLM_MODEL)")
    args = parser.parse_args()
    floors = tuple(float(f) for f in args.floors.split(",") if f.strip())
    result = run(args.data, args.conversations, args.questions, args.turns, floors,
                 args.embedder, args.expand)
    print(json.dumps(result, indent=2) if args.json else render(result))


if __name__ == "__main__":
    main()
