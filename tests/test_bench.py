"""The benchmark scripts keep working: a tiny run of each, checked for shape and sense."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCOMO = ROOT.parent / "shared" / "data" / "locomo" / "locomo-dev.json"


def _run(*args: str) -> dict:
    done = subprocess.run([sys.executable, *args, "--json"], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(not LOCOMO.exists(), reason="../shared/data/locomo is not beside the checkout")
def test_locomo_bench_on_one_conversation_slice_with_the_model_step(server):
    """memos' own figures and the baselines; with --expand, each question goes once to the
    model the environment names (a real OpenAI-protocol server on 127.0.0.1), and its
    figures are reported apart."""
    server.extractions = [lambda body: '{"lines": ["a photo of a painting"]}'] * 20
    result = _run("bench/locomo.py", "--conversations", "1", "--turns", "60",
                  "--questions", "15", "--expand")
    assert set(result) >= {"recall_at", "by_category", "baselines", "latency_ms", "skipped"}
    assert set(result["recall_at"]) == {"5", "10", "20", "50"}
    recalls = [result["recall_at"][k] for k in ("5", "10", "20", "50")]
    assert all(0 <= r <= 1 for r in recalls) and recalls == sorted(recalls)
    assert set(result["baselines"]) == {"bm25", "dense"}
    assert result["latency_ms"]["p50"] > 0 and result["ingest_turns_per_s"] > 0
    expanded = result["expanded"]
    assert expanded["model"] == "tiny-chat" and expanded["no_usable_wording"] == 0.0
    assert set(expanded["recall_at"]) == {"5", "10", "20", "50"}
    assert 0 < len(server.requests) <= 15
    assert all(r["response_format"] == {"type": "json_object"} for r in server.requests)


def test_scale_bench_on_a_tiny_store():
    result = _run("bench/scale.py", "--sizes", "40", "--queries", "3", "--runs", "1")
    size = result["sizes"]["40"]
    assert size["floors"]["import_chromadb_s"] > 0 and size["floors"]["raw_chroma_query_s"] > 0
    assert min(size["cold"].values()) > 0 and len(result["ratios"]) == 2
    assert size["import_per_s"] > 0 and size["bytes_per_memory"] > 0
    agent = size["agent"]  # the agent's own measures, on the same store
    assert agent["wall_s"]["recall (agent)"] > 0 and agent["wall_s"]["recall (no agent)"] > 0
    assert agent["agent_rss_mb"] > 0 and agent["first_s"]["first after start"] > 0
    assert size["warm_recall_ms"]["p50"] > 0
    assert set(size["cold_recall"]["breakdown_s"]) >= {"interpreter", "imports", "model load", "query"}
    assert result["help_s"] > 0 and result["version_s"] > 0


def test_samefact_bench_compares_the_old_and_new_merge_rules():
    result = _run("bench/samefact.py")
    rules = {r["rule"]: r for r in result["results"]}
    assert rules["new: same statement"]["different_merged"] == 0
    assert rules["new: same statement"]["same_rate"] >= 0.7
    assert all(r["different"] + r["same"] >= 60 for r in rules.values())


def test_mcp_start_bench_times_initialize():
    result = _run("bench/mcp_start.py", "--runs", "1")
    assert result["runs"] == 1 and result["initialize_ms"]["p50"] > 0


def test_locomo_abstention_swaps_the_speakers_names_whole_words_only():
    from bench.locomo import swap_names

    names = {"Caroline": "Jon", "Melanie": "Gina"}
    assert (swap_names("What did Caroline tell Melanie about Caroline's art?", names)
            == "What did Jon tell Gina about Jon's art?")
    assert swap_names("Carolines and Melanies", names) == "Carolines and Melanies"


def test_locomo_abstention_is_reported_for_tuning_and_held_out_stores_apart():
    from bench.locomo import Abstention

    abstention = Abstention()
    abstention.silent = {("tuning", 0.3): [True, False], ("held-out", 0.3): [True, True]}
    abstention.kept = {("tuning", 0.3): [True], ("held-out", 0.3): [False]}
    summary = abstention.summary()
    assert summary["0.3"]["foreign_answered_with_nothing"] == 0.75
    assert summary["parts"]["tuning"]["0.3"]["foreign_answered_with_nothing"] == 0.5
    assert summary["parts"]["held-out"]["0.3"]["own_evidence_kept"] == 0.0
