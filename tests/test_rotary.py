"""rotary.py: the kept tables give exactmath.rotary's values, whatever the cache holds."""

import numpy as np
import pytest

from llmzip.engine import rotary
from llmzip.numeric import exactmath as xm

THETA, D = 10000.0, 16


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMZIP_CACHE", str(tmp_path))
    rotary._block.cache_clear()
    yield tmp_path / "rotary"
    rotary._block.cache_clear()


def _expected(positions):
    return np.array([xm.rotary(p, THETA, D) for p in positions])


def test_rows_are_the_definition(cache):
    positions = [0, 1, 127, 128, 129, 4095, 4096, 300, -1, -128, -129]
    assert np.array_equal(rotary.rows(positions, THETA, D), _expected(positions))
    kept = sorted(p.name for p in cache.iterdir())
    assert kept and all(name.endswith(".npy") for name in kept)  # no temporary files left
    rotary._block.cache_clear()  # read back from disk
    assert np.array_equal(rotary.rows(positions, THETA, D), _expected(positions))


@pytest.mark.parametrize("damage", ["garbage", "wrong row", "wrong shape"])
def test_a_damaged_block_is_computed_again(cache, damage):
    rotary.rows([5], THETA, D)
    path = next(cache.iterdir())
    table = np.load(path)
    if damage == "garbage":
        path.write_bytes(b"not a table")
    elif damage == "wrong row":
        table[0, 0, 0] += 1e-9
        np.save(path, table)
    else:
        np.save(path, table[:, :, :4])
    rotary._block.cache_clear()
    assert np.array_equal(rotary.rows([0, 5], THETA, D), _expected([0, 5]))
    assert np.array_equal(np.load(path), _expected(range(rotary.BLOCK)))  # rewritten


def test_an_unwritable_cache_costs_only_time(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory would be")
    monkeypatch.setenv("LLMZIP_CACHE", str(blocker))
    rotary._block.cache_clear()
    try:
        assert np.array_equal(rotary.rows([3, 200], THETA, D), _expected([3, 200]))
    finally:
        rotary._block.cache_clear()
