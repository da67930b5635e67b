"""User settings: the TOML config file, overridden by environment variables.

The config file holds no secrets and no memory text: API keys come from the
environment (or, later, the encrypted key store). The file carries a version;
a newer one is refused.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Mapping

from memos_cli.errors import UsageError, VersionError
from memos_cli.paths import Paths

CONFIG_VERSION = 1


@dataclass(frozen=True)
class EmbeddingSettings:
    model: str = "local"  # "local" (built-in MiniLM) or "openai:<model>"
    base_url: str | None = None
    api_key: str | None = None
    timeout: float = 30.0


def read_config(paths: Paths) -> dict[str, Any]:
    """The parsed config file, or {} when there is none."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(paths.config_file, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {paths.config_file}: {exc}") from None
    if int(doc.get("version", CONFIG_VERSION)) > CONFIG_VERSION:
        raise VersionError(f"{paths.config_file} was written by a later memos: upgrade memos")
    return doc


def embedding_settings(paths: Paths, env: Mapping[str, str] | None = None) -> EmbeddingSettings:
    env = os.environ if env is None else env
    section = read_config(paths).get("embedding", {})
    return EmbeddingSettings(
        model=env.get("MEMOS_EMBED_MODEL") or section.get("model", "local"),
        base_url=env.get("MEMOS_EMBED_BASE_URL") or section.get("base_url"),
        api_key=env.get("MEMOS_EMBED_API_KEY") or env.get("OPENAI_API_KEY"),
        timeout=float(section.get("timeout", 30.0)),
    )
