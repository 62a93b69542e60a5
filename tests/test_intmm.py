"""The 16-bit x int8 kernel (intmm.py) gives the exact integers, and the engine's linear layer
through it the format's bits; the kernel choice goes by exactness first, then speed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llmzip.codec import selfcheck
from llmzip.engine import exact as E
from llmzip.numeric import intmm, jit, products
from llmzip.numeric.products import Products

pytestmark = pytest.mark.skipif(not products.int16_is_exact(), reason="numba is not installed")


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 2, 16), (4, 511, 17), (7, 512, 33),
                                   (9, 2 * 2 * intmm.BLOCK + 1, 40), (13, 1536, 64)])
def test_products_are_exact_at_the_extremes(m, k, n):
    """Every row of the largest magnitude against every column of the largest: the biggest
    sums an int32 block may hold (2 * 32767 * 127 * BLOCK), with odd sizes and tiles."""
    rng = np.random.default_rng(k)
    q = rng.integers(-32767, 32768, (m, k)).astype(np.int16)
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    q[0], w[0] = 32767, 127
    if m > 1:
        q[1] = -32767
    if n > 1:
        w[-1] = -127
    ref = q.astype(np.int64) @ w.astype(np.int64).T
    for chunks in (1, 2, 3):
        assert np.array_equal(intmm.product(q, intmm.block(w), n, chunks), ref)


def test_block_layout_is_the_documented_one():
    w = np.arange(-60, 60, dtype=np.int8).reshape(20, 6)
    b = intmm.block(w)
    assert b.shape == (2, 3, 32)
    assert b[0, 1, 2 * 3] == w[3, 2] and b[0, 1, 2 * 3 + 1] == w[3, 3]
    assert b[1, 2, 2 * 2] == w[18, 4] and not b[1, :, 2 * 4:].any()  # columns 20.. are zero


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def test_rows_past_the_bound_take_the_pieces_and_give_the_format_bits():
    """Where the pieces' products pass 2**24, f32(P) is not the format's value; the kernel's
    bound check sends those rows through their pieces (the reference: the float32 kernel)."""
    selfcheck.enable()
    if not jit.available():
        pytest.skip("the fused kernels are off here")
    x, w = selfcheck.bound_rows()
    ones = torch.ones(w.shape[0])
    ref = E.IntLinear(w, ones, Products("cpu", "float32"))
    lin = E.IntLinear(w, ones, Products("cpu", "int16"))
    with jit.disabled():
        want = ref(x)
    assert torch.equal(_bits(E.fused_linear(lin, x)), _bits(want))
    # ... and the test can fail: f32 of the whole product differs from the format somewhere
    q = torch.round(x / (x.abs().amax(dim=1, keepdim=True) / E.QMAX)).to(torch.int16)
    whole = torch.from_numpy(intmm.product(q.numpy(), lin.w.w, lin.w.n).astype(np.float32))
    assert not torch.equal(_bits(whole), _bits(want))


@pytest.mark.parametrize("k", [64, 577, 1033, 1536])
def test_linear_matches_the_float32_reference(k, monkeypatch):
    monkeypatch.setenv(products.KERNEL_ENV, "float32")  # (the engine below: no timing)
    selfcheck.enable()
    gen = torch.Generator().manual_seed(k)
    x = selfcheck.adversarial(12, k, seed=k)
    w = torch.randint(-127, 128, (70, k), generator=gen, dtype=torch.int8)
    w_scale, bias = torch.rand(70, generator=gen) * 0.01, torch.randn(70, generator=gen)
    gain = torch.randn(k, generator=gen)
    ref = E.IntLinear(w, w_scale, Products("cpu", "float32"), bias)
    lin = E.IntLinear(w, w_scale, Products("cpu", "int16"), bias)
    engine = E.Engine(E.LlamaConfig(8, k, 8, 1, 1, 1, k, 1e4, 1e-5, True))
    with jit.disabled():
        want, want_n = ref(x), engine.normed_linear(x, ref, gain)
        assert torch.equal(_bits(lin(x)), _bits(want))  # the torch path with this kernel
    if jit.available():
        assert torch.equal(_bits(E.fused_linear(lin, x)), _bits(want))
        assert torch.equal(_bits(E.fused_linear(lin, x, gain, 1e-5)), _bits(want_n))


# ------------------------------------------------------------------------- the choice


def test_the_fastest_exact_kernel_is_chosen_never_a_slow_one():
    """A fake slow-but-exact kernel loses to a fast one; the order breaks ties."""
    seconds = {"reference-loop": 0.5, "fast": 0.01, "medium": 0.05}
    name, times = products.fastest(list(seconds), seconds.__getitem__)
    assert name == "fast" and times == seconds
    assert products.fastest(["a", "b"], lambda k: 1.0)[0] == "a"


def test_choice_times_only_exact_kernels_and_is_remembered(monkeypatch, tmp_path):
    """A kernel whose probe failed is never timed nor chosen, however fast; the choice is
    kept in the cache per machine and read back without timing again."""
    monkeypatch.setenv("LLMZIP_CACHE", str(tmp_path))
    monkeypatch.delenv(products.KERNEL_ENV, raising=False)
    monkeypatch.setattr(products, "exact_kernels", lambda device: ["int16", "float32"])
    timed = []

    def fake_time(name, device, shapes, rows=products.TIMED_ROWS, repeat=3):
        timed.append(name)
        return {"int8": 0.0, "int16": 0.2, "float32": 0.1}[name]  # int8: fast, inexact here

    monkeypatch.setattr(products, "time_kernel", fake_time)
    assert products.choose("cpu", [(64, 32)]) == "float32"
    assert sorted(timed) == ["float32", "int16"]
    saved = json.loads((tmp_path / "kernels.json").read_text())
    assert [v["kernel"] for v in saved.values()] == ["float32"]
    timed.clear()
    assert products.choose("cpu", [(64, 32)]) == "float32" and not timed
    assert products.choose("cpu", [(64, 48)]) == "float32" and timed  # other shapes: timed


def test_the_encoder_and_the_decoder_get_the_kernel_fastest_at_their_rows(monkeypatch,
                                                                          tmp_path):
    """The choice is timed at the rows its user runs (the encoder's passes ahead, the
    decoder's steps) and kept for each apart: one kernel may win at 128 rows, another at 1."""
    monkeypatch.setenv("LLMZIP_CACHE", str(tmp_path))
    monkeypatch.delenv(products.KERNEL_ENV, raising=False)
    monkeypatch.setattr(products, "exact_kernels", lambda device: ["int8", "int16", "float32"])
    seen = []

    def fake_time(name, device, shapes, rows=products.TIMED_ROWS, repeat=3):
        seen.append(tuple(rows))
        big = max(rows) >= 64
        return {"int8": 0.1 if big else 0.3, "int16": 0.2, "float32": 0.5}[name]

    monkeypatch.setattr(products, "time_kernel", fake_time)
    assert products.choose("cpu", [(64, 32)], products.ENCODER_ROWS) == "int8"
    assert products.choose("cpu", [(64, 32)], products.DECODER_ROWS) == "int16"
    assert set(seen) == {products.ENCODER_ROWS, products.DECODER_ROWS}
    assert len(json.loads((tmp_path / "kernels.json").read_text())) == 2
    seen.clear()
    assert products.choose("cpu", [(64, 32)], products.ENCODER_ROWS) == "int8" and not seen


def test_a_forced_kernel_must_be_exact_here(monkeypatch):
    from llmzip.errors import LlmzipError

    monkeypatch.setattr(products, "exact_kernels", lambda device: ["int16", "float32"])
    monkeypatch.setenv(products.KERNEL_ENV, "int16")
    assert products.choose("cpu") == "int16"
    monkeypatch.setenv(products.KERNEL_ENV, "int8")
    with pytest.raises(LlmzipError, match="not an exact kernel here"):
        products.choose("cpu")


def test_timing_a_kernel_measures_seconds_per_row():
    t = products.time_kernel("int16", "cpu", [(48, 40)], rows=(1, 4), repeat=1)
    assert 0 < t < 10


@pytest.mark.parametrize("m,n", [(1, 1), (5, 17), (8, 300)])
def test_int16_keys_are_exact_at_recalls_extremes(m, n):
    """Recall's product (int16 'weights'): keys and queries at +-128, the largest the
    quantiser makes, give the exact integer dot products."""
    rng = np.random.default_rng(n)
    q = rng.integers(-128, 129, (m, 256)).astype(np.int16)
    w = rng.integers(-128, 129, (n, 256)).astype(np.int16)
    q[0], w[0], w[-1] = 128, 128, -128
    ref = q.astype(np.int64) @ w.astype(np.int64).T
    b = intmm.block(w)
    assert b.dtype == np.int16 and b.shape == (-(-n // 16), 128, 32)
    for chunks in (1, 2):
        assert np.array_equal(intmm.product(q, b, n, chunks), ref)
