"""Small helpers the benchmark scripts share: percentiles, tables, a temporary memos home."""

from __future__ import annotations

import os
import platform
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    values = np.array(seconds) * 1000.0
    if not len(values):
        return {"p50": 0.0, "p95": 0.0}
    return {"p50": round(float(np.percentile(values, 50)), 2),
            "p95": round(float(np.percentile(values, 95)), 2)}


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, columns padded to fit (pastes into Markdown as a code block)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


@contextmanager
def temporary_home() -> Iterator[Path]:
    """A fresh, empty MEMOS_HOME (key-file mode, no keyring) for one measured store."""
    with tempfile.TemporaryDirectory(prefix="memos-bench-") as tmp:
        saved = {k: os.environ.get(k) for k in ("MEMOS_HOME", "MEMOS_KEYRING")}
        os.environ.update(MEMOS_HOME=tmp, MEMOS_KEYRING="0")
        try:
            yield Path(tmp)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
