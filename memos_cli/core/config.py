"""User settings: the TOML config file, overridden by environment variables.

The config file holds no secrets and no memory text: API keys come from the
environment or the encrypted vault (``vault.py``). The file carries a version; a
newer one is refused. ``set_value``/``unset_value`` edit it atomically, written by
``tomli_w``. A value the user set wins over a later source even when it is 0 or empty.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Mapping

from memos_cli.core.atomic import write_atomic
from memos_cli.core.errors import UsageError, VersionError
from memos_cli.core.paths import Paths

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
        text = paths.config_file.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {paths.config_file}: {exc}") from None
    try:
        doc = tomllib.loads(_join_surrogates(text))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"cannot read {paths.config_file}: {exc}") from None
    if int(doc.get("version", CONFIG_VERSION)) > CONFIG_VERSION:
        raise VersionError(f"{paths.config_file} was written by a later memos: upgrade memos")
    return doc


def _join_surrogates(text: str) -> str:
    """Read files written by older memos, whose writer spelled a character outside the
    BMP as a JSON surrogate pair (``\\ud83d\\ude00``), which TOML does not allow."""
    def joined(match: re.Match[str]) -> str:
        high, low = int(match.group(1), 16), int(match.group(2), 16)
        return "\\U%08X" % (0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))

    return _SURROGATE_PAIR.sub(joined, text)


_SURROGATE_PAIR = re.compile(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", re.IGNORECASE)


def _first(*values: Any) -> Any:
    """The first value that is set, even to 0 or "": what the user set wins."""
    return next((value for value in values if value is not None), None)


def embedding_settings(paths: Paths, env: Mapping[str, str] | None = None) -> EmbeddingSettings:
    env = os.environ if env is None else env
    section = read_config(paths).get("embedding", {})
    return EmbeddingSettings(
        model=_first(env.get("MEMOS_EMBED_MODEL"), section.get("model"), "local"),
        base_url=_first(env.get("MEMOS_EMBED_BASE_URL"), section.get("base_url")) or None,
        api_key=env.get("MEMOS_EMBED_API_KEY") or env.get("OPENAI_API_KEY"),
        timeout=float(section.get("timeout", 30.0)),
    )


# --- recall --------------------------------------------------------------------------------

# The highest floor that keeps >= 95% of LoCoMo's evidence hits shown, with a margin, on
# the tuning conversations; the held-out ones agree (docs/benchmarks.md, floor 0.32).
RECALL_FLOOR = 0.32


def recall_floor(paths: Paths, env: Mapping[str, str] | None = None) -> float:
    """The relevance below which recall prints nothing: MEMOS_RECALL_FLOOR, then
    ``[recall] floor``, then the default (see docs/benchmarks.md for how it was chosen)."""
    env = os.environ if env is None else env
    raw = env.get("MEMOS_RECALL_FLOOR")
    if raw is None:
        raw = read_config(paths).get("recall", {}).get("floor", RECALL_FLOOR)
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise UsageError(f"the recall floor must be a number, not {raw!r}") from None


def recall_expand(paths: Paths) -> bool:
    """Whether recall asks the chat model for other wordings of each question (``[recall]
    expand``; off unless set: it sends the question to the model, see assistant/expansion.py)."""
    raw = read_config(paths).get("recall", {}).get("expand", False)
    if not isinstance(raw, bool):
        raise UsageError(f"recall.expand must be true or false, not {raw!r}")
    return raw


# --- the chat model ----------------------------------------------------------------------

PRESETS = {
    "openai": "https://api.openai.com/v1",
    "ollama": "http://localhost:11434/v1",
    "lmstudio": "http://localhost:1234/v1",
    "vllm": "http://localhost:8000/v1",
    "llamacpp": "http://localhost:8080/v1",
}


@dataclass(frozen=True)
class LlmSettings:
    base_url: str | None
    model: str
    api_key: str | None = None
    timeout: float = 60.0
    temperature: float = 0.3


def llm_settings(paths: Paths, flags: Mapping[str, Any] | None = None,
                 env: Mapping[str, str] | None = None,
                 stored_key: str | None = None) -> LlmSettings | None:
    """The chat model to use, or None when none is configured.

    Precedence: flags, then environment (MEMOS_LLM_*, OPENAI_API_KEY), then the
    config file's [llm] section, then defaults. A preset names a local server's
    usual address. ``stored_key`` is the API key kept in the encrypted vault.
    """
    env = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    section = read_config(paths).get("llm", {})

    def pick(name: str, env_name: str | None = None) -> Any:
        return _first(flags.get(name), env.get(env_name) if env_name else None, section.get(name))

    preset = pick("preset", "MEMOS_LLM_PRESET") or None
    if preset is not None and preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
    base_url = _first(pick("base_url", "MEMOS_LLM_BASE_URL"),
                      PRESETS[preset] if preset else None) or None
    model = pick("model", "MEMOS_LLM_MODEL")
    api_key = (flags.get("api_key") or env.get("MEMOS_LLM_API_KEY") or stored_key
               or env.get("OPENAI_API_KEY"))
    if not model:
        if base_url or preset:
            raise UsageError("a model server is configured but no model: "
                             "memos config set llm.model NAME (see 'memos models')")
        return None
    return LlmSettings(base_url=base_url, model=str(model), api_key=api_key,
                       timeout=_number("llm.timeout", pick("timeout", "MEMOS_LLM_TIMEOUT"), 60.0),
                       temperature=_number("llm.temperature", pick("temperature"), 0.3))


def _number(name: str, value: Any, default: float) -> float:
    if value is None:
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} needs a number, not {value!r}") from None


# --- the resident agent ------------------------------------------------------------------------

AGENT_TTL = "15m"
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class AgentSettings:
    ttl: float  # seconds an idle agent keeps the key and the open store; 0: no agent
    autostart: bool  # whether a command starts the agent when none is running


def agent_settings(paths: Paths, env: Mapping[str, str] | None = None) -> AgentSettings:
    """``MEMOS_AGENT_TTL``, then ``[agent] ttl`` (default 15 minutes); ``[agent] autostart``."""
    env = os.environ if env is None else env
    section = read_config(paths).get("agent", {})
    ttl = duration("agent.ttl", _first(env.get("MEMOS_AGENT_TTL"), section.get("ttl"), AGENT_TTL))
    return AgentSettings(ttl=ttl, autostart=bool(_first(section.get("autostart"), True)))


def duration(name: str, raw: Any) -> float:
    """Seconds from "90", "90s", "15m" or "2h" (as ssh-agent's -t reads them)."""
    text = str(raw).strip().lower()
    scale = _UNITS.get(text[-1:], None)
    try:
        seconds = float(text[:-1] if scale else text) * (scale or 1.0)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise UsageError(f"{name} needs a duration such as 900, 90s, 15m or 2h, not {raw!r}")
    return seconds


# --- editing the file ------------------------------------------------------------------------

SETTABLE: dict[str, dict[str, type]] = {
    "llm": {"preset": str, "base_url": str, "model": str, "timeout": float, "temperature": float},
    "embedding": {"model": str, "base_url": str, "timeout": float},
    "store": {"url": str, "ca": str},
    "recall": {"floor": float, "expand": bool},
    "agent": {"ttl": str, "autostart": bool},
}
SECRET_KEYS = {"llm.api_key", "embedding.api_key", "store.token"}  # in the vault, never the file


def _lifecycle_types() -> dict[str, type]:
    from memos_cli.core.lifecycle import Rules

    defaults = Rules()
    return {name: type(getattr(defaults, name)) for name in Rules.__dataclass_fields__}


def set_value(paths: Paths, dotted: str, raw: str) -> None:
    """Set ``section.key`` in config.toml (typed, validated, written atomically)."""
    section, key, kind = _settable(dotted)
    try:
        value = kind(raw) if kind is not bool else raw.lower() in ("1", "true", "yes", "on")
    except ValueError:
        raise UsageError(f"{dotted} needs a {kind.__name__}, not {raw!r}") from None
    if dotted == "llm.preset" and value not in PRESETS:
        raise UsageError(f"unknown preset {value!r}: use one of {', '.join(PRESETS)}")
    if dotted == "agent.ttl":
        duration(dotted, value)
    doc = read_config(paths)
    doc.setdefault(section, {})[key] = value
    write_config(paths, doc)


def unset_value(paths: Paths, dotted: str) -> bool:
    section, key, _kind = _settable(dotted)
    doc = read_config(paths)
    removed = doc.get(section, {}).pop(key, None) is not None
    if not doc.get(section, True):
        doc.pop(section)
    write_config(paths, doc)
    return removed


def _settable(dotted: str) -> tuple[str, str, type]:
    section, _, key = dotted.partition(".")
    table = dict(SETTABLE, lifecycle=_lifecycle_types()).get(section, {})
    if key not in table:
        known = sorted(f"{s}.{k}" for s, t in dict(SETTABLE, lifecycle=_lifecycle_types()).items()
                       for k in t)
        raise UsageError(f"unknown setting {dotted!r}; settable: {', '.join(known)}, "
                         f"and the secrets {', '.join(sorted(SECRET_KEYS))}")
    return section, key, table[key]


def write_config(paths: Paths, doc: dict[str, Any]) -> None:
    import tomli_w

    tables = {k: v for k, v in doc.items() if k != "version" and isinstance(v, dict)}
    text = tomli_w.dumps({"version": CONFIG_VERSION, **tables})
    write_atomic(paths.config_file, text.encode("utf-8"), mode=0o600)


# --- what is in effect, and why (config show) ------------------------------------------------

ENV_NAMES = {
    "llm.preset": "MEMOS_LLM_PRESET", "llm.base_url": "MEMOS_LLM_BASE_URL",
    "llm.model": "MEMOS_LLM_MODEL", "llm.timeout": "MEMOS_LLM_TIMEOUT",
    "embedding.model": "MEMOS_EMBED_MODEL", "embedding.base_url": "MEMOS_EMBED_BASE_URL",
    "store.url": "MEMOS_STORE", "store.ca": "MEMOS_STORE_CA", "recall.floor": "MEMOS_RECALL_FLOOR",
    "llm.api_key": "MEMOS_LLM_API_KEY", "embedding.api_key": "MEMOS_EMBED_API_KEY",
    "store.token": "MEMOS_STORE_TOKEN", "agent.ttl": "MEMOS_AGENT_TTL",
}
DEFAULTS = {"llm.timeout": 60.0, "llm.temperature": 0.3, "embedding.model": "local",
            "embedding.timeout": 30.0, "recall.floor": RECALL_FLOOR, "recall.expand": False,
            "agent.ttl": AGENT_TTL, "agent.autostart": True}


@dataclass(frozen=True)
class Setting:
    name: str
    value: Any  # None: not set; a secret's value is never carried, only "(set)"
    source: str  # "flag", "environment", "file", "vault" (secrets) or "default"


def effective_settings(paths: Paths, flags: Mapping[str, Any] | None = None,
                       env: Mapping[str, str] | None = None) -> list[Setting]:
    """Every setting's value in effect and where it comes from, highest precedence first:
    flag, environment, config file, default. Secrets are left to the caller (the vault)."""
    env = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    doc = read_config(paths)
    defaults = dict(DEFAULTS, **{f"lifecycle.{name}": value
                                 for name, value in _lifecycle_defaults().items()})
    settings = []
    tables: dict[str, dict[str, type]] = {**SETTABLE, "lifecycle": _lifecycle_types()}
    for section, table in tables.items():
        for key in table:
            name, env_name = f"{section}.{key}", ENV_NAMES.get(f"{section}.{key}", "")
            if name in flags:
                settings.append(Setting(name, flags[name], "flag"))
            elif env.get(env_name):
                settings.append(Setting(name, env[env_name], "environment"))
            elif key in doc.get(section, {}):
                settings.append(Setting(name, doc[section][key], "file"))
            else:
                settings.append(Setting(name, defaults.get(name), "default"))
    return settings


def _lifecycle_defaults() -> dict[str, Any]:
    from dataclasses import asdict

    from memos_cli.core.lifecycle import Rules

    return asdict(Rules())


@dataclass(frozen=True)
class StoreSettings:
    """Where the store is: a Chroma server (``url``; None: the local folder), its token, CA."""

    url: str | None = None
    token: str | None = None  # from the environment; the vault's is read once the key is open
    ca: str | None = None  # a CA bundle for a server whose TLS certificate is self-signed


def store_settings(paths: Paths, flag: str | None = None,
                   env: Mapping[str, str] | None = None) -> StoreSettings:
    """The store to use: ``--store``, then ``MEMOS_STORE``, then ``[store] url``; else local."""
    env = os.environ if env is None else env
    section = read_config(paths).get("store", {})
    return StoreSettings(url=flag or env.get("MEMOS_STORE") or section.get("url"),
                         token=env.get("MEMOS_STORE_TOKEN"),
                         ca=env.get("MEMOS_STORE_CA") or section.get("ca"))
