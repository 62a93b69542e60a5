"""Exact arithmetic every layer above relies on: exp and its tables (exactmath.py), the exact
matrix products and the choice among them (products.py, intmm.py), numba intrinsics
(pairdot.py), the linear layer's quantiser (linear.py) and the shared numba set-up (jit.py).

Importing the package points numba's cache at ``<llmzip cache>/numba`` (``NUMBA_CACHE_DIR``,
unless it is set), before any module here imports numba (pairdot and jit both do)."""

import os
import sys

from llmzip.cache import cache_dir

if "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = str(cache_dir() / "numba")
    if "numba" in sys.modules:  # numba was imported before us: its config is already read
        sys.modules["numba"].config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
