"""Exact by construction: the arithmetic primitives, and files that decode bit for bit in
other numeric environments (instruction sets, kernels, thread counts): the acceptance check of
the one exact engine, on the tiny model and on the real model."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import llmzip
from llmzip.numeric import exactmath as xm
from tests.helpers import CORPUS, HASWELL, english_text, subprocess_env

GOLDEN = Path(__file__).parent / "golden"
# (a) the host's best kernels (kernels.choose's), (b) no SIMD in torch, oneDNN limited to
# SSE4.1 (so the int8 kernel is refused by the start-up probe) and numba's kernels compiled
# for a generic x86-64, with intmm's 16-bit kernel forced (its plain vector IR), (c) the
# float32 kernel forced and the torch reference instead of the fused kernels (what a machine
# without numba runs), (d) numba's kernels for an AVX2-only x86 (pairdot's and intmm's
# 256-bit pmaddwd), intmm forced; 1 and 2 threads.
ENVIRONMENTS = {
    "host-2-threads": ({}, 2),
    "no-simd-1-thread": ({"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                          "NUMBA_CPU_NAME": "generic", "LLMZIP_KERNEL": "int16"}, 1),
    "float32-kernel-1-thread": ({"LLMZIP_KERNEL": "float32", "LLMZIP_FUSED": "0"}, 1),
    "avx2-2-threads": ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                        "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": HASWELL,
                        "LLMZIP_KERNEL": "int16"}, 2),
}


# ---------------------------------------------------------------- exactmath


@settings(deadline=None)
@given(st.floats(-700, 700))
def test_exp_matches_libm(x):
    got = float(xm.exp(torch.tensor([x], dtype=torch.float64))[0])
    assert got == pytest.approx(math.exp(x), rel=1e-14)


@settings(deadline=None)
@given(st.floats(-87, 88))
def test_exp32_matches_libm(x):
    got = float(xm.exp32(torch.tensor([x], dtype=torch.float32))[0])
    assert got == pytest.approx(math.exp(float(torch.tensor(x, dtype=torch.float32))),
                                rel=2e-7)


def test_exp_zero_is_one_and_clamps():
    e = xm.exp(torch.tensor([0.0, -1e9, 1e9], dtype=torch.float64))
    assert e[0].item() == 1.0
    assert 0 < e[1].item() < 1e-300 and math.isfinite(e[2].item())
    e32 = xm.exp32(torch.tensor([0.0, -1e9, 1e9]))
    assert e32[0].item() == 1.0 and e32[1].item() > 0 and math.isfinite(e32[2].item())


def test_exp_table_is_the_rounded_exponential():
    t = xm.exp_table(8, 24, 0, 4500)
    assert t[0] == 1 << 24 and t[-1] == 0
    for i in (1, 100, 2000):
        assert abs(int(t[i]) - (1 << 24) * math.exp(-i / 256)) <= 0.5 + 1e-6


def test_pow2_is_exact():
    e = torch.arange(-1022, 1024)
    assert all(v == 2.0 ** int(k) for k, v in zip(e, xm.pow2(e).tolist()))
    e = torch.arange(-126, 128)
    assert all(v == 2.0 ** int(k) for k, v in zip(e, xm.pow2_32(e).tolist()))


@settings(deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40), st.integers(4, 30))
def test_quantize_rows_bounds_and_error(values, bits):
    top = max(abs(v) for v in values)
    assume(top == 0 or top >= 2.0 ** (bits - 1023))  # the domain: pow2's exponents (found by
    # hypothesis: [2.2e-308] with bits 4 needs 2**(4 + 1021), past pow2's range)
    x = torch.tensor([values], dtype=torch.float64)
    q, scale = xm.quantize_rows(x, bits)
    assert torch.equal(q, torch.round(q)) and q.abs().max() <= 2**bits
    assert math.log2(scale.item()).is_integer()
    assert (q * scale - x).abs().max() <= scale.item() / 2


def test_check_exact_refuses_what_could_round():
    xm.check_exact(15, 23, 1536)
    with pytest.raises(ValueError):
        xm.check_exact(26, 26, 2)


def test_rotary_tables_match_libm():
    for pos in (0, 1, 7, 1000, -512, 300_000):
        cos, sin = xm.rotary(pos, 10000.0, 16)
        for i, (c, s) in enumerate(zip(cos, sin)):
            a = pos * 10000.0 ** (-2 * i / 16)
            assert c == pytest.approx(math.cos(a), abs=1e-9)
            assert s == pytest.approx(math.sin(a), abs=1e-9)


# ---------------------------------------------------------------- files in other environments


def _decode_elsewhere(path: Path, model: str, env: dict[str, str], threads: int) -> bytes:
    """`llmzip decompress --threads N` in a fresh process with ``env`` added."""
    return subprocess.run(
        [sys.executable, "-m", "llmzip", "decompress", "-c", "-q", "--threads", str(threads),
         str(path)], capture_output=True, env=subprocess_env(model, **env), check=True,
        timeout=1500).stdout


@pytest.mark.parametrize("name", list(ENVIRONMENTS))
def test_default_file_decodes_in_every_environment(tiny_model, tmp_path, model_coding, name):
    data = CORPUS.encode() * 3
    path = tmp_path / "x.llmz"
    path.write_bytes(llmzip.compress(data, model=tiny_model, window=16, streams=3, threads=2))
    env, threads = ENVIRONMENTS[name]
    assert _decode_elsewhere(path, tiny_model, env, threads) == data


@pytest.mark.parametrize("name", ["no-simd-1-thread", "float32-kernel-1-thread"])
def test_legacy_portable_file_decodes_in_other_environments(tiny_model, name):
    """A --portable file of format 2 (llmzip 0.1) decodes anywhere too (legacy engine)."""
    path = GOLDEN / "v2" / "portable-recall.llmz"
    env, threads = ENVIRONMENTS[name]
    assert _decode_elsewhere(path, tiny_model, env, threads) == path.with_suffix(
        ".orig").read_bytes()


@pytest.mark.model
@pytest.mark.slow
def test_real_model_file_decodes_in_every_environment(real_model, tmp_path):
    """The acceptance check of the exact engine, on the default model with default settings:
    made here with the host's kernels and 2 threads, decoded without SIMD on 1 thread, with
    the float32 kernel, and with AVX2 kernels."""
    data = english_text()[3000:4500]
    path = tmp_path / "alice.llmz"
    path.write_bytes(llmzip.compress(data, model=real_model, threads=2))
    from llmzip.format import container as fmt

    with open(path, "rb") as f:
        header = fmt.Header.read(f)
        assert any(isinstance(fr, fmt.CodedFrame) for _, fr in fmt.frames(f, header))
    for name in ("no-simd-1-thread", "float32-kernel-1-thread", "avx2-2-threads"):
        env, threads = ENVIRONMENTS[name]
        assert _decode_elsewhere(path, real_model, env, threads) == data, name


def test_kernel_env_forces_the_float32_kernel(monkeypatch):
    from llmzip.numeric import products

    monkeypatch.setenv(products.KERNEL_ENV, "float32")
    products.int8_is_exact.cache_clear()
    try:
        assert products.Products("cpu").name == "float32"
    finally:
        products.int8_is_exact.cache_clear()
    assert os.environ[products.KERNEL_ENV] == "float32"
