"""The rotary tables of positions, computed once per machine and kept.

:func:`exactmath.rotary` is the definition (decimal arithmetic, one rounding to float64): ~2 ms
a position, once per step of every stream batch, which was ~3% of a default run. :func:`rows`
returns the same float64 values from blocks of :data:`BLOCK` positions, each computed once and
kept in memory and in ``<llmzip cache>/rotary`` (a block read back is used only if it has the
right shape and its first and last rows equal a fresh :func:`exactmath.rotary`; otherwise it
is computed again). Nothing here changes a value: a missing or unwritable cache only costs
time.
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from llmzip.numeric import exactmath as xm

BLOCK = 128  # positions per block (~0.3 s to compute)
_VERSION = 1


def _directory() -> Path:
    from llmzip.cache import cache_dir

    return cache_dir() / "rotary"


def _compute(block: int, theta: float, head_dim: int) -> np.ndarray:
    start = block * BLOCK
    out = np.empty((BLOCK, 2, head_dim // 2), np.float64)
    for i in range(BLOCK):
        out[i] = xm.rotary(start + i, theta, head_dim)
    return out


def _valid(table: np.ndarray, block: int, theta: float, head_dim: int) -> bool:
    if table.shape != (BLOCK, 2, head_dim // 2) or table.dtype != np.float64:
        return False
    start = block * BLOCK
    return all(np.array_equal(table[i], np.array(xm.rotary(start + i, theta, head_dim)))
               for i in (0, BLOCK - 1))


@lru_cache(maxsize=256)
def _block(block: int, theta: float, head_dim: int) -> np.ndarray:
    path = _directory() / f"v{_VERSION}-{theta!r}-{head_dim}-{block}.npy"
    try:
        table = np.load(path, allow_pickle=False)
        if _valid(table, block, theta, head_dim):
            return table
    except (OSError, ValueError):
        pass
    table = _compute(block, theta, head_dim)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    except OSError:
        return table
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, table)
        os.replace(tmp, path)  # atomic: a reader sees the old file or the whole new one
    except OSError:
        Path(tmp).unlink(missing_ok=True)
    return table


def rows(positions: list[int], theta: float, head_dim: int) -> np.ndarray:
    """[len(positions), 2, head_dim / 2] float64: exactmath.rotary's (cos, sin) of each."""
    out = np.empty((len(positions), 2, head_dim // 2), np.float64)
    for j, p in enumerate(positions):
        block, i = divmod(p, BLOCK)
        out[j] = _block(block, float(theta), head_dim)[i]
    return out
