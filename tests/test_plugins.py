"""Plugins (issue 11): providers registered by entry point, chosen by a model spec's prefix.

A tiny plugin package is installed into a folder on the test's PYTHONPATH (a package
and its .dist-info, which is what pip leaves), and memos uses it end to end as a
subprocess: an embedder that stores and recalls, a chat model that answers.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from memos_cli.core import plugins
from memos_cli.core.errors import ModelError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent

PLUGIN = '''
import hashlib
import json

import numpy as np


class WordHash:
    dim = 64

    def __init__(self, name):
        self.model_id = f"toy-{name}"

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            out[row] /= np.linalg.norm(out[row]) or 1.0
        return out


class Parrot:
    def __init__(self, name):
        self.name = f"toy:{name}"

    def complete(self, messages, *, json_mode=False):
        if json_mode:
            return json.dumps({"operations": [{"op": "NONE"}]})
        return "".join(self.stream(messages))

    def stream(self, messages):
        yield "toy parrot says: "
        yield messages[-1]["content"].split("\\n")[-1]

    def models(self):
        return ["parrot", "macaw"]


def embedder(name, settings):
    return WordHash(name)


def chat_model(name, settings):
    return Parrot(name)
'''


@pytest.fixture
def plugin_path(tmp_path) -> str:
    site = tmp_path / "site"
    (site / "memos_toy").mkdir(parents=True)
    (site / "memos_toy" / "__init__.py").write_text(PLUGIN)
    info = site / "memos_toy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: memos-toy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [memos.embedders]
        toy = memos_toy:embedder

        [memos.chat_models]
        toy = memos_toy:chat_model
        """))
    return str(site)


def test_an_installed_plugin_embeds_stores_and_recalls_end_to_end(cli_proc, plugin_path):
    env = {"PYTHONPATH": plugin_path, "MEMOS_EMBED_MODEL": "toy:words"}
    assert cli_proc("remember", "the spare key is under the blue pot", env=env).code == 0
    found = cli_proc("recall", "where is the spare key", "--json", env=env)
    assert found.code == 0, found.err
    assert json.loads(found.out)[0]["text"] == "the spare key is under the blue pot"
    stats = json.loads(cli_proc("stats", "--json", env=env).out)
    assert "toy-words" in json.dumps(stats)


def test_an_installed_plugin_answers_as_the_chat_model(cli_proc, plugin_path):
    env = {"PYTHONPATH": plugin_path, "MEMOS_LLM_MODEL": "toy:parrot"}
    answered = cli_proc("ask", "hello there", env=env)
    assert answered.code == 0, answered.err
    assert answered.out.strip() == "toy parrot says: hello there"
    listed = cli_proc("models", env={**env, "MEMOS_LLM_BASE_URL": "http://127.0.0.1:9/v1"})
    assert listed.out.split() == ["parrot", "macaw"]


def test_an_unknown_prefix_names_what_is_installed():
    with pytest.raises(ModelError, match="installed: local, openai"):
        plugins.embedder_factory("word2vec:big")


def test_a_model_name_with_a_colon_goes_to_the_openai_provider_whole():
    factory, name = plugins.chat_factory("llama3:8b")
    assert name == "llama3:8b" and factory.__name__ == "openai_chat"
    factory, name = plugins.chat_factory("openai:gpt-4o-mini")
    assert name == "gpt-4o-mini" and factory.__name__ == "openai_chat"


def test_the_built_in_providers_are_registered_as_entry_points_like_any_plugin():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert {group: dict(names) for group, names in declared.items()} == plugins.BUILT_IN


def test_using_the_built_in_providers_reads_no_package_metadata():
    code = ("import sys\nfrom memos_cli.search.embedding import make_embedder\nmake_embedder('local')\n"
            "print('importlib.metadata' in sys.modules)")
    import subprocess

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.stdout.strip() == "False", done.stderr
