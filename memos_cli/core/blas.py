"""One BLAS thread per memos command, set before numpy is imported.

One short command on a few busy cores: BLAS thread pools cost far more than they give,
and the store lock may be held meanwhile (deriving the vector rotation took 0.45 s with
them, 0.05 s without, on 2 cores; issue 12 measured 0.9-1.85 s on a loaded machine).
OpenBLAS reads these variables when numpy is first imported, so whoever may import it
(``__main__``, the agent, and the agent again for each command's environment) sets them.
"""

from __future__ import annotations

from typing import MutableMapping

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def one_thread(environ: MutableMapping[str, str]) -> None:
    """Ask for one BLAS thread, unless the user chose a number."""
    for name in THREAD_VARIABLES:
        environ.setdefault(name, "1")
