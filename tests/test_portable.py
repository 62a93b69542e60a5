"""The portable mode: exact arithmetic primitives, the exact Llama step, and files that decode
bit for bit in another numeric environment (instruction set, thread count, batch layout)."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

import llmzip
from llmzip import container as fmt
from llmzip import exactmath as xm
from llmzip.codec import Settings
from llmzip.errors import FormatError
from llmzip.exactllama import ExactLlama
from llmzip.exactmixer import ExactMixer
from llmzip.listing import describe
from llmzip.llama import Llama, LlamaConfig
from llmzip.mixer import MixConfig
from tests.helpers import CORPUS, english_text

# Environments that change the kernels torch runs: no SIMD at all, or AVX2 only, one thread.
OTHER_ENVS = [
    {"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1"},
    {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "1"},
]


def _load(path: str) -> tuple[LlamaConfig, dict[str, torch.Tensor]]:
    d = Path(path)
    return (LlamaConfig.from_hf(json.loads((d / "config.json").read_text())),
            load_file(str(d / "model.safetensors")))


# ---------------------------------------------------------------- exactmath


@settings(deadline=None)
@given(st.floats(-700, 700))
def test_exp_matches_libm(x):
    got = float(xm.exp(torch.tensor([x], dtype=torch.float64))[0])
    assert got == pytest.approx(math.exp(x), rel=1e-14)


def test_exp_zero_is_one_and_clamps():
    e = xm.exp(torch.tensor([0.0, -1e9, 1e9], dtype=torch.float64))
    assert e[0].item() == 1.0
    assert 0 < e[1].item() < 1e-300 and math.isfinite(e[2].item())


def test_pow2_is_exact():
    e = torch.arange(-1022, 1024)
    assert all(v == 2.0 ** int(k) for k, v in zip(e, xm.pow2(e).tolist()))


@settings(deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40), st.integers(4, 30))
def test_quantize_rows_bounds_and_error(values, bits):
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
    for pos in (0, 1, 7, 1000, -512):
        cos, sin = xm.rotary(pos, 10000.0, 16)
        for i, (c, s) in enumerate(zip(cos, sin)):
            a = pos * 10000.0 ** (-2 * i / 16)
            assert c == pytest.approx(math.cos(a), abs=1e-12)
            assert s == pytest.approx(math.sin(a), abs=1e-12)


# ---------------------------------------------------------------- the exact step


def _run(model, tokens: torch.Tensor, window: int) -> list[torch.Tensor]:
    cache = model.new_cache(tokens.shape[0], window, 2)
    return [model.step(cache, tokens[:, t]) for t in range(tokens.shape[1])]


def test_exact_step_close_to_float_step(tiny_model):
    config, weights = _load(tiny_model)
    gen = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, config.vocab_size, (3, 40), generator=gen)
    exact = _run(ExactLlama(config, weights), tokens, window=16)  # re-bases twice
    ref = _run(Llama(config, weights, dtype=torch.float64), tokens, window=16)
    for a, b in zip(exact, ref):
        assert a.dtype == torch.float64
        assert (a - b).abs().max() < 1e-3 * b.abs().max()  # 15-bit weights and KV cache


def test_exact_step_ignores_batch_layout_and_threads(tiny_model):
    """A stream's logits are the same bits alone or in a batch, with 1 or 2 threads."""
    config, weights = _load(tiny_model)
    model = ExactLlama(config, weights)
    gen = torch.Generator().manual_seed(4)
    tokens = torch.randint(0, config.vocab_size, (5, 30), generator=gen)
    batched = _run(model, tokens, window=12)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = _run(model, tokens[2:3], window=12)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a[2:3], b) for a, b in zip(batched, alone))


@pytest.mark.parametrize("config", [MixConfig(ngram=False, match=False, recall=False), MixConfig(),
                                    MixConfig(shared=False), MixConfig(bias_adaptive=False),
                                    MixConfig(ngram=False, match=False, bias=False)],
                         ids=["bias", "all", "unshared", "sgd-bias", "recall"])
def test_exact_mixer_sums_to_one_and_adapts(config):
    mixer = ExactMixer(50, [70, 70], config)
    logits = torch.zeros(2, 50, dtype=torch.float64)
    states = torch.randn(50, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    first = mixer.mix(logits, states[[0, 0]])
    mixer.update(np.array([1, 1]))
    prev = 1
    for _ in range(20):  # a repeated sequence: 7 8 9 7 8 9 ...
        for token in (7, 8, 9):
            p = mixer.mix(logits, states[[prev, prev]])
            assert np.all(p > 0) and np.allclose(p.sum(axis=1), 1.0, atol=1e-12)
            mixer.update(np.array([token, token]))
            prev = token
    after = mixer.mix(logits, states[[prev, prev]])
    assert after[0, 7] > 2 * first[0, 7] and after[0, 3] < first[0, 3]


@pytest.mark.parametrize("config", [
    MixConfig(), MixConfig(shared=False), MixConfig(bias_sum=False),
    MixConfig(bias_adaptive=False, bias_lr=0.125), MixConfig(bias_adaptive=False, shared=False)],
    ids=["default", "unshared", "bias-mean", "sgd-bias", "sgd-unshared"])
def test_exact_mixer_matches_the_fast_mixer(config):
    """Same rules as mixer.ContextMixer: close probabilities on the same logits."""
    from llmzip.mixer import ContextMixer

    gen = torch.Generator().manual_seed(5)
    exact, fast = ExactMixer(64, [50, 50], config), ContextMixer(64, [50, 50], config)
    states = torch.randn(64, 8, generator=gen, dtype=torch.float64)
    prev = [0, 0]
    for t in range(50):
        logits = torch.randn(2, 64, generator=gen, dtype=torch.float64) * 3
        hidden = states[prev]
        a, b = exact.mix(logits, hidden), fast.mix(logits.float().numpy(), hidden.float())
        assert np.abs(a - b).max() < 1e-5
        y = np.array([t % 5, (t * 7) % 11])
        exact.update(y)
        fast.update(y)
        prev = list(y)


def test_exact_mixer_refuses_the_geometric_mixture():
    with pytest.raises(ValueError):
        ExactMixer(50, [1], MixConfig(geometric=True, recall=False))


# ---------------------------------------------------------------- files


def _portable(data: bytes, model: str, **kw) -> bytes:
    return llmzip.compress(data, model=model, dtype="portable", window=16, **kw)


@pytest.mark.parametrize("data", [b"", b"A", bytes(range(256)), b"\xff\xfe invalid \xc3",
                                  CORPUS.encode() * 2])
def test_portable_roundtrip(tiny_model, data):
    blob = _portable(data, tiny_model, streams=3)
    assert llmzip.decompress(blob, model=tiny_model) == data
    assert llmzip.decompress(blob, model=tiny_model, threads=1) == data


def test_portable_header_and_info(tiny_model):
    blob = _portable(CORPUS.encode(), tiny_model)
    header = fmt.Header.read(io.BytesIO(blob))
    assert header.portable and header.model.dtype == "portable"
    assert "portable (exact integer arithmetic" in describe(io.BytesIO(blob), "x")


def test_portable_flag_and_dtype_must_agree(tiny_model):
    blob = bytearray(_portable(CORPUS.encode(), tiny_model))
    blob[5] &= ~fmt.FLAG_PORTABLE  # flags byte
    with pytest.raises(FormatError, match="portable"):
        llmzip.decompress(bytes(blob), model=tiny_model)


def test_portable_file_with_too_large_a_window_is_corrupt(tiny_model):
    blob = _portable(CORPUS.encode(), tiny_model)
    header = fmt.Header.read(io.BytesIO(blob))
    forged = dataclasses.replace(header, model=dataclasses.replace(header.model, window=9000))
    rest = blob[len(header.to_bytes()):]
    with pytest.raises(FormatError, match="window"):
        llmzip.decompress(forged.to_bytes() + rest, model=tiny_model)


def test_portable_settings():
    with pytest.raises(ValueError, match="geometric"):
        Settings(dtype="portable", mix=MixConfig(geometric=True, recall=False))
    with pytest.raises(ValueError, match="portable"):
        Settings(dtype="portable", window=1 << 14)


def _decode_elsewhere(path: Path, model: str, env: dict[str, str]) -> bytes:
    """`llmzip decompress --threads 1` in a fresh process with ``env`` added."""
    full = {**os.environ, **env, "LLMZIP_MODEL": model}
    return subprocess.run(
        [sys.executable, "-m", "llmzip", "decompress", "-c", "-q", "--threads", "1", str(path)],
        capture_output=True, env=full, check=True, timeout=900).stdout


@pytest.mark.parametrize("env", OTHER_ENVS, ids=["no-simd", "avx2"])
def test_portable_file_decodes_in_another_environment(tiny_model, tmp_path, env):
    data = CORPUS.encode() * 3
    path = tmp_path / "x.llmz"
    path.write_bytes(_portable(data, tiny_model, streams=2, threads=2))
    assert _decode_elsewhere(path, tiny_model, env) == data


@pytest.mark.model
@pytest.mark.slow
def test_real_model_portable_file_decodes_with_avx2_and_one_thread(real_model, tmp_path):
    """The acceptance check of the portable mode, on the default model and settings."""
    data = english_text()[3000:5000]
    path = tmp_path / "alice.llmz"
    path.write_bytes(llmzip.compress(data, model=real_model, dtype="portable", threads=2))
    assert _decode_elsewhere(path, real_model, OTHER_ENVS[1]) == data



def test_cli_portable_flag_info_and_decode_options(tiny_env, tmp_path):
    from tests.helpers import invoke

    src = tmp_path / "a.txt"
    src.write_bytes(CORPUS.encode())
    assert invoke(["compress", "--portable", "--context", "16", str(src)]).exit_code == 0
    info = invoke(["info", f"{src}.llmz"])
    assert "portable (exact integer arithmetic" in info.output
    src.rename(tmp_path / "orig.txt")
    done = invoke(["decompress", "--threads", "1", "--device", "cpu", f"{src}.llmz"])
    assert done.exit_code == 0 and src.read_bytes() == CORPUS.encode()
    clash = invoke(["compress", "--portable", "--dtype", "float32", "-c", str(src)])
    assert clash.exit_code == 2 and "disagree" in clash.output
