"""Where memos keeps things: the one function that decides every path.

``MEMOS_HOME`` puts data, config and keys under one folder (tests and portable
installs use it); otherwise platformdirs' user data and config dirs for "memos".
Nothing else in memos builds a path from scratch.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from memos_cli.core.errors import UsageError

if TYPE_CHECKING:  # the agent's client imports this module: only what it needs at run time
    from typing import Mapping

DEFAULT_PROFILE = "default"
DELTA_SUFFIX = ".delta"  # an index's delta file (keyword, list): its base's name + this
_PROFILE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class Paths(NamedTuple):
    """All the places memos reads and writes, for one installation."""

    data_dir: Path
    config_dir: Path

    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def lock_file(self) -> Path:
        # One lock for the whole Chroma folder: vacuuming its SQLite file
        # after a forget touches every profile's rows.
        return self.data_dir / "store.lock"

    @property
    def keys_dir(self) -> Path:
        return self.config_dir / "keys"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    def key_file(self, profile: str) -> Path:
        return self.keys_dir / f"{profile}.json"

    def secret_file(self, profile: str) -> Path:
        return self.keys_dir / f"{profile}.secret"

    def vault_file(self, profile: str) -> Path:
        return self.keys_dir / f"{profile}.vault"

    def journal_file(self, profile: str) -> Path:
        return self.data_dir / f"{profile}.journal"

    def keyword_file(self, profile: str) -> Path:
        return self.data_dir / f"{profile}.keywords"

    def keyword_delta_file(self, profile: str) -> Path:
        return self.data_dir / f"{profile}.keywords{DELTA_SUFFIX}"

    def listing_file(self, profile: str) -> Path:
        return self.data_dir / f"{profile}.listing"

    def listing_delta_file(self, profile: str) -> Path:
        return self.data_dir / f"{profile}.listing{DELTA_SUFFIX}"

    def audit_file(self, profile: str) -> Path:
        return self.data_dir / f"{profile}.audit"

    def usage_file(self, profile: str) -> Path:
        return self.data_dir / f"{profile}.usage"

    def autoconsolidate_file(self, profile: str) -> Path:
        return self.data_dir / f"{profile}.autoconsolidate"

    def restore_marker(self, profile: str) -> Path:
        # Present only while a restore swaps a profile in (see engine/backup.py).
        return self.data_dir / f"{profile}.restore"

    def profile_files(self, profile: str) -> "ProfileFiles":
        return ProfileFiles(self, profile)


class ProfileFiles(NamedTuple):
    """The one list of the files a profile owns beside its Chroma collection, grouped by
    what each job does with them (SECURITY.md's file table says what each holds).

    ``keys.destroy`` shreds the key files; the rest are listed here so that no command
    that copies, re-seals or deletes a profile can miss one.
    """

    paths: Paths
    profile: str

    @property
    def key_files(self) -> list[Path]:
        """The wrapped data key, its key-file secret and the vault sealed under it."""
        return [self.paths.key_file(self.profile), self.paths.secret_file(self.profile),
                self.paths.vault_file(self.profile)]

    @property
    def sealed(self) -> dict[str, Path]:
        """The side files sealed under the data key, by name."""
        return {"keywords": self.paths.keyword_file(self.profile),
                "keywords-delta": self.paths.keyword_delta_file(self.profile),
                "listing": self.paths.listing_file(self.profile),
                "listing-delta": self.paths.listing_delta_file(self.profile),
                "audit": self.paths.audit_file(self.profile),
                "vault": self.paths.vault_file(self.profile),
                "usage": self.paths.usage_file(self.profile)}

    @property
    def changed_with_rows(self) -> list[Path]:
        """What a consolidation changes beside the rows: copied aside, put back on failure."""
        return [path for name, path in self.sealed.items() if name != "vault"]

    @property
    def derived(self) -> list[Path]:
        """Indexes derived from the rows (keyword index, list index): rebuilt when missing."""
        return [self.sealed[name] for name in ("keywords", "keywords-delta", "listing",
                                                  "listing-delta")]

    @property
    def backed_up(self) -> dict[str, Path]:
        """What a backup carries beside the rows (the derived indexes are rebuilt instead)."""
        return {name: path for name, path in self.sealed.items() if path not in self.derived}

    @property
    def state(self) -> list[Path]:
        """Bookkeeping that belongs to the rows of the moment: dropped with them."""
        return [*self.derived, self.paths.journal_file(self.profile),
                self.paths.autoconsolidate_file(self.profile)]

    @property
    def everything(self) -> list[Path]:
        """Every file of the profile, once each: what ``forget --all`` removes."""
        return list(dict.fromkeys([*self.key_files, *self.sealed.values(), *self.state,
                                   self.paths.restore_marker(self.profile)]))


def resolve_paths(env: Mapping[str, str] | None = None) -> Paths:
    """Decide where everything lives, honouring ``MEMOS_HOME``."""
    env = os.environ if env is None else env
    home = env.get("MEMOS_HOME")
    if home:
        root = Path(home).expanduser().resolve()
        return Paths(data_dir=root / "data", config_dir=root / "config")
    import platformdirs  # only here: the one place that asks the platform

    return Paths(
        data_dir=Path(platformdirs.user_data_dir("memos", appauthor=False)),
        config_dir=Path(platformdirs.user_config_dir("memos", appauthor=False)),
    )


def resolve_profile(name: str | None, env: Mapping[str, str] | None = None) -> str:
    """The profile to use: the flag, else ``MEMOS_PROFILE``, else "default"."""
    env = os.environ if env is None else env
    profile = name or env.get("MEMOS_PROFILE") or DEFAULT_PROFILE
    if not _PROFILE_RE.match(profile):
        raise UsageError(
            f"invalid profile name {profile!r}: use 1-32 of a-z, 0-9, '_' and '-'"
        )
    return profile


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700 for the leaf; tighten if it exists."""
    from memos_cli.core.atomic import make_private_dirs

    make_private_dirs(path)
    os.chmod(path, 0o700)
    return path
