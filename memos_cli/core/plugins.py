"""Providers of embeddings and chat models, found by entry point, chosen by prefix.

A model spec ``PREFIX:NAME`` (``embedding.model``, ``llm.model``) picks the provider
registered as ``PREFIX`` in the entry-point group ``memos.embedders`` or
``memos.chat_models``; the provider is a factory called with ``NAME`` and the settings
(``EmbeddingSettings`` or ``LlmSettings``) and returns an object with the ``Embedder``
or ``ChatModel`` protocol. memos' own providers are registered the same way, in its
pyproject.toml: the embedders ``local`` (the built-in model) and ``openai`` (an
OpenAI-compatible endpoint), and the chat model ``openai``. See docs/plugins.md.

Installed packages' entry points are read only for a prefix that is not built in:
importing ``importlib.metadata`` and scanning every installed package costs about
0.15 s, which a command using the built-in providers does not pay. A chat model spec
whose prefix no provider claims ("gpt-4o", "llama3:8b": model names may contain
colons) goes to the ``openai`` provider whole.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from memos_cli.core.errors import ModelError

EMBEDDERS = "memos.embedders"
CHAT_MODELS = "memos.chat_models"
# The same names and targets as [project.entry-points] in pyproject.toml (a test holds it).
BUILT_IN: dict[str, dict[str, str]] = {
    EMBEDDERS: {"local": "memos_cli.search.embedding:local_embedder",
                "openai": "memos_cli.search.embedding:openai_embedder"},
    CHAT_MODELS: {"openai": "memos_cli.assistant.llm:openai_chat"},
}
DEFAULT_CHAT_PROVIDER = "openai"

Factory = Callable[[str, Any], Any]


def embedder_factory(spec: str) -> tuple[Factory, str]:
    """(factory, name) for an embedding model spec: "local", "openai:NAME", "PREFIX:NAME"."""
    prefix, _, name = spec.partition(":")
    factory = _factory(EMBEDDERS, prefix)
    if factory is None:
        raise ModelError(f"unknown embedding model {spec!r}: use 'local', 'openai:<model>' or "
                         f"a plugin's 'PREFIX:<model>' (installed: {', '.join(available(EMBEDDERS))})")
    return factory, name


def chat_factory(spec: str) -> tuple[Factory, str]:
    """(factory, name) for a chat model spec; an unclaimed prefix is part of the name."""
    prefix, colon, name = spec.partition(":")
    factory = _factory(CHAT_MODELS, prefix) if colon else None
    if factory is None:
        return _load(CHAT_MODELS, DEFAULT_CHAT_PROVIDER, BUILT_IN[CHAT_MODELS]["openai"]), spec
    return factory, name


def available(group: str) -> list[str]:
    """Every provider name of ``group``: built in and installed."""
    return sorted(set(BUILT_IN[group]) | set(_installed(group)))


def _factory(group: str, prefix: str) -> Factory | None:
    target = BUILT_IN[group].get(prefix) or _installed(group).get(prefix)
    return _load(group, prefix, target) if target else None


def _installed(group: str) -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=group)}


def _load(group: str, prefix: str, target: str) -> Factory:
    module, _, attribute = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"the {group} provider {prefix!r} ({target}) cannot be loaded: "
                         f"{exc}") from None
