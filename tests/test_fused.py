"""The fused CPU kernels (llmzip/fused.py) give the very bits of their torch references: each
kernel on random and adversarial inputs of many shapes, the whole model step by step, and
whole compressed files."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import llmzip
from llmzip import model as models
from llmzip.codec import selfcheck
from llmzip.engine import exact as E
from llmzip.engine import kernels as engine_kernels
from llmzip.engine.llama import LlamaConfig
from llmzip.format.mixconfig import MixConfig
from llmzip.mixing import kernels
from llmzip.mixing import mixer as M
from llmzip.mixing.bias import Bias
from llmzip.numeric import jit
from llmzip.numeric.products import Products, exact_kernels
from tests.helpers import HASWELL

try:
    from tests.helpers import build_model_dir
except ImportError:  # the builders used to live in conftest
    from tests.conftest import build_model_dir

pytestmark = pytest.mark.skipif(os.environ.get(jit.ENV) == "0",
                                reason="LLMZIP_FUSED=0: the fused kernels are off")
FEW = settings(max_examples=25, deadline=None)


def same(a, b) -> bool:
    """The same bits (NaN, -0.0 and all), shapes and dtypes."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(
        a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


def rows(b: int, k: int, seed: int, **kw) -> torch.Tensor:
    """b rows of k values: the adversarial rows (zero, outlier, ties, extremes, subnormals)
    first, then random rows of mixed magnitudes."""
    x = selfcheck.adversarial(max(b, 8), max(k, 4), seed=seed, **kw)[:, :k]
    return x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:b]]


def test_the_fused_kernels_are_available_and_pass_the_self_check():
    assert selfcheck.enable()
    assert jit.available()
    assert selfcheck.failures() == []


def test_no_multiply_add_is_contracted_into_an_fma():
    assert jit.contraction_free()


def test_the_contraction_probe_would_catch_an_fma():
    """The probe's values tell an FMA from two roundings: numba's fastmath version of the same
    loop (which may contract) gives other bits, where the CPU has FMA."""
    numba = pytest.importorskip("numba")
    src = inspect.getsource(jit._fma_probe.py_func)
    src = src[src.index("def "):]
    scope: dict = {}
    exec(src, scope)
    contracted = numba.njit(fastmath=True)(scope["_fma_probe"])
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(4096).astype(np.float32) for _ in range(3))
    out = np.empty(4096, np.float32)
    contracted(a, b, c, out)
    separate = a * b
    separate += c
    if np.array_equal(out, separate):
        pytest.skip("no FMA contraction on this CPU")
    exact = (a.astype(np.float64) * b + c).astype(np.float32)  # one rounding: what FMA gives
    assert np.array_equal(out, exact)


@pytest.mark.parametrize("kernel", ["int8", "int16", "float32"])
@FEW
@given(b=st.integers(1, 12), k=st.sampled_from([4, 17, 64, 576, 1100]),
       n=st.integers(1, 48), seed=st.integers(0, 2**16), with_bias=st.booleans())
def test_linear_and_normed_linear(kernel, b, k, n, seed, with_bias):
    """Every product kernel (int32 sums, intmm's 16-bit rows, and float32 ones split beyond
    1032 terms)."""
    if kernel not in exact_kernels("cpu"):
        pytest.skip(f"the {kernel} kernel is not exact on this CPU")
    products = Products("cpu", kernel)
    gen = torch.Generator().manual_seed(seed)
    w = torch.randint(-127, 128, (n, k), generator=gen, dtype=torch.int8)
    bias = torch.randn(n, generator=gen) * 3 if with_bias else None
    lin = E.IntLinear(w, torch.rand(n, generator=gen) * 0.02, products, bias)
    x = rows(b, k, seed)
    gain = torch.randn(k, generator=gen) * torch.exp2(torch.randint(-3, 4, (k,), generator=gen))
    gain[: min(k, 3)] = torch.tensor([0.0, 1.0, -2.0])[: min(k, 3)]
    config = LlamaConfig(8, k, 8, 1, 1, 1, 8, 10000.0, 1e-6 if seed % 2 else 1e-5, True)
    engine = E.Engine(config)
    with jit.disabled():
        ref = lin(x)
    assert same(ref, E.fused_linear(lin, x))
    # x * gain must stay finite (the engine's domain: a float32 overflow of the activations
    # is a broken model, and its NaN patterns are not specified): outliers of 1e36 here.
    x = rows(b, k, seed, huge=1e36)
    with jit.disabled():
        ref_normed = engine.normed_linear(x, lin, gain)
    assert same(ref_normed, E.fused_linear(lin, x, gain, config.rms_eps))


@FEW
@given(b=st.integers(1, 9), n=st.integers(1, 300), seed=st.integers(0, 2**16),
       strided=st.booleans())
def test_silu(b, n, seed, strided):
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat([rows(b, n, seed) * 8, torch.randn(b, n, generator=gen) * 40], dim=1)
    x[0, : min(n, 6)] = torch.tensor([-100.0, 100.0, 87.5, -88.5, -0.0, 1e-30])[: min(n, 6)]
    gate = x.chunk(2, dim=-1)[0] if strided else x
    with jit.disabled():
        ref = E.Engine.silu(gate)
    assert same(ref, engine_kernels.silu_(gate))


_MADD4 = """
import numpy as np, sys
from numba import njit
from llmzip.numeric.pairdot import madd4, pack

@njit
def run(acc, k, ks, q, offsets):
    for o in offsets:
        for b in range(0, acc.shape[0], 16):
            madd4(acc, b, k, 2 * b + o, ks, q[0], q[1], q[2], q[3])

rng = np.random.default_rng(int(sys.argv[1]))
k = rng.integers(-128, 128, 3000).astype(np.int8)
k[:64] = -128
lo, hi = rng.integers(-32768, 32768, (2, 4))
lo[0] = hi[0] = -32768  # the extremes: -32768 * -128 twice is 2**23
acc = rng.integers(-2**20, 2**20, 48).astype(np.int32)
want = acc.astype(np.int64)
offsets = np.array([0, 1, 7])
run(acc, k, 700, pack(lo, hi), offsets)
for o in offsets:
    for l in range(48):
        for p in range(4):
            at = 700 * p + 2 * l + o
            want[l] += int(k[at]) * int(lo[p]) + int(k[at + 1]) * int(hi[p])
assert np.array_equal(acc, want), (acc, want)

from llmzip.numeric import intmm  # rows4 with int16 keys (recall's product)
from llmzip.engine.kernels import _scores  # the score intrinsics, 64 and 16 slots
q16 = rng.integers(-128, 129, (6, 256)).astype(np.int16)
w16 = rng.integers(-128, 129, (40, 256)).astype(np.int16)
q16[0], w16[0] = 128, -128
ref = q16.astype(np.int64) @ w16.astype(np.int64).T
assert np.array_equal(intmm.product(q16, intmm.block(w16), 40), ref)
W, R, DP = 96, 5, 8
kp = rng.integers(-128, 128, (DP, W, 2)).astype(np.int8)
vp = np.zeros((W // 2, 2 * DP, 2), np.int8)
qp = pack(rng.integers(-32768, 32768, (R, DP)), rng.integers(-32768, 32768, (R, DP)))
sc = np.zeros((R, W), np.int32)
_scores(qp, kp, vp, W, sc)
keys = kp.transpose(1, 0, 2).reshape(W, 2 * DP).astype(np.int64)
qs = np.stack([qp & 0xFFFF, qp >> 16], -1).astype(np.int16).reshape(R, 2 * DP)
assert np.array_equal(sc, qs.astype(np.int64) @ keys.T)
print("equal")
"""


@pytest.mark.parametrize("target", [
    "host",  # here: 512-bit pmaddwd (VNNI: vpdpwssd) where AVX-512 BW is there
    "avx2",  # two 256-bit pmaddwd
    "generic",  # plain vector IR
])
@pytest.mark.parametrize("seed", [0, 1])
def test_pairdot_gives_the_exact_sums_on_every_target(target, seed, tmp_path):
    pytest.importorskip("numba")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    if target == "avx2":
        env.update(NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=HASWELL)
    elif target == "generic":
        env.update(NUMBA_CPU_NAME="generic")
    out = subprocess.run([sys.executable, "-c", _MADD4, str(seed)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "equal" in out.stdout, out.stderr[-2000:]


@settings(max_examples=12, deadline=None)
@given(heads=st.sampled_from([(4, 2, 16), (6, 3, 8), (3, 1, 128), (2, 2, 48)]),
       b=st.integers(1, 4), window=st.integers(4, 12) | st.integers(30, 40),
       sinks=st.integers(0, 3), keys=st.booleans(),
       seed=st.integers(0, 2**16))
def test_attention_and_the_cache(heads, b, window, sinks, keys, seed):
    """Engine.attention over a sliding window (ring wrap-around and the sinks moving up), on
    head sizes whose score step 256 / sqrt(D) is not a power of two (48, 128) and is, with
    and without key exponents (keyscale.py)."""
    H, G, D = heads
    sinks = min(sinks, window - 1)
    config = LlamaConfig(8, H * D, 8, 2, H, G, D, 10000.0, 1e-5, True)
    engine = E.Engine(config)
    e = None
    if keys:
        e = torch.from_numpy(np.random.default_rng(seed).integers(0, 13, (2, G, D // 2)))
        e = torch.cat([e, e], -1).to(torch.int32)
    ref_cache = engine.new_cache(config, b, window, sinks, e)
    cache = engine.new_cache(config, b, window, sinks, e)
    for t in range(2 * window + 3):
        qkv = rows(b, (H + 2 * G) * D, seed + t, huge=1e4) * (0.05 if t % 3 else 20)
        with jit.disabled():
            pos = engine.begin(ref_cache)
            ref = [engine.attention(ref_cache, i, pos, qkv) for i in range(2)]
        pos = engine.begin(cache)
        out = [engine_kernels.attention(engine, cache, i, pos, qkv) for i in range(2)]
        assert all(same(x, y) for x, y in zip(ref, out)), t
        for name in E._CACHED:
            assert same(getattr(ref_cache, name), getattr(cache, name)), (t, name)
        ref_cache.t += 1
        cache.t += 1


@pytest.mark.parametrize("R", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("n", [64, 65, 130, 333])
def test_attend_over_long_windows_in_every_row_grouping(R, n):
    """The scores in passes of 64 slots and up to four query rows (pairdot's score
    intrinsics, then 16-slot tails and leftover rows): the reference's bits for every group
    size R and window length n, keys and values at the int8 extremes."""
    G, D, b = 2, 32, 2
    config = LlamaConfig(8, R * G * D, 8, 2, R * G, G, D, 10000.0, 1e-5, True)
    engine = E.Engine(config)
    gen = torch.Generator().manual_seed(n * 7 + R)
    pieces = torch.randint(-127, 128, (b, G, 2 * R, D), generator=gen).float()
    keys = torch.randint(-127, 128, (b, G, D, n), generator=gen).float()
    keys[0, 0, :, : n // 2] = 127  # the largest scores: |q k| D at its bound
    values = torch.randint(-127, 128, (b, G, n, D), generator=gen).float()
    q_scale = torch.rand(b, G, R, 1, generator=gen) * 1e-3
    k_scale = torch.rand(b, G, n, generator=gen) + 0.5
    v_scale = torch.rand(b, G, n, generator=gen) + 0.5
    with jit.disabled():
        ref = engine.attend(pieces, q_scale, keys, k_scale, values, v_scale)
    got = engine_kernels.attend(engine, pieces, q_scale, keys, k_scale, values, v_scale)
    assert same(ref, got)


@FEW
@given(n=st.integers(1, 8), v=st.integers(1, 3000), bias=st.sampled_from([None, 1, 2]),
       seed=st.integers(0, 2**16), scale=st.sampled_from([256, 240, 255, 257, 64, 1024]))
def test_lm_frequencies_and_the_mixture(n, v, bias, seed, scale):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(-6000, 6000, (n, v), generator=gen).float() / 512  # ties at .5 steps
    x[-1] = torch.randn(v, generator=gen) * 20
    if n > 1:
        x[0, 0] = 1e30
    b = None if bias is None else torch.randn((v,) if bias == 1 else (n + 2, v),
                                              generator=gen) * 0.25
    with jit.disabled():
        xb = x if b is None else x + (b if b.ndim == 1 else b[:n])
        ref = M.lm_frequencies(xb, scale)
    f, total = kernels.lm_frequencies(x, b, M._table64(), scale)
    assert same(ref, f)
    assert same(ref.sum(dim=1, keepdim=True), total)
    k = torch.rand(n, generator=gen, dtype=torch.float64).numpy() / total[:, 0].numpy()
    assert same((ref * torch.from_numpy(k)[:, None]).numpy(), kernels.mixture(f, k))


@FEW
@given(n=st.integers(1, 7), v=st.integers(2, 2000), adaptive=st.booleans(),
       per_token=st.booleans(), seed=st.integers(0, 2**16))
def test_the_shared_bias_step(n, v, adaptive, per_token, seed):
    gen = torch.Generator().manual_seed(seed)
    config = MixConfig(bias_adaptive=adaptive, bias_sum=per_token)
    ref, ours = Bias(v, config, n), Bias(v, config, n)
    for _ in range(4):
        with jit.disabled():
            f = M.lm_frequencies(ref.apply(torch.randn(n, v, generator=gen) * 6))
        total = f.sum(dim=1, keepdim=True)
        y = torch.randint(0, v, (n,), generator=gen)
        y[-1] = y[0]  # a token twice
        resp = torch.rand(n, generator=gen, dtype=torch.float64)
        resp[0] = 1.0
        with jit.disabled():
            ref.update(f, total, y, resp)
        c, ry = ours.shared_factors(total, resp)
        kernels.bias_update(ours, f, c, y, ry)
        assert same(ref.b, ours.b) and same(ref.b32, ours.b32)
        assert (ref.g2 is None) == (ours.g2 is None)
        assert ref.g2 is None or same(ref.g2, ours.g2)


def _run(model: str, steps: int = 40, batch: int = 3, window: int = 16):
    """Logits and mixer probabilities of a few steps over a sliding window."""
    llama = models.load(model).llama
    vocab = llama.config.vocab_size
    tokens = torch.randint(0, vocab, (steps, batch), generator=torch.Generator().manual_seed(5))
    cache = llama.new_cache(batch, window, 4)
    mixer = M.Mixer(vocab, [steps] * batch, MixConfig())
    out = []
    for t in range(steps):
        logits = llama.step(cache, tokens[t])
        probs = mixer.mix(logits, cache.hidden)
        mixer.update(tokens[(t + 1) % steps].numpy())
        out.append((logits, torch.from_numpy(probs)))
    return out


def _qwen2_model(tmp_path_factory) -> str:
    if "kind" not in inspect.signature(build_model_dir).parameters:
        pytest.skip("this checkout's test helpers build no Qwen2 model")
    return str(build_model_dir(tmp_path_factory.mktemp("qwen2"), kind="qwen2"))


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_the_whole_model_gives_the_same_logits_and_probabilities(kind, tiny_model,
                                                                 tmp_path_factory):
    model = tiny_model if kind == "llama" else _qwen2_model(tmp_path_factory)
    with jit.disabled():
        ref = _run(model)
    ours = _run(model)
    assert jit.available()  # (model.load ran the self-check): the fused kernels ran
    for t, ((lr, pr), (lo, po)) in enumerate(zip(ref, ours)):
        assert same(lr, lo), f"logits differ at step {t}"
        assert same(pr, po), f"probabilities differ at step {t}"


def test_compressed_files_are_the_same_bytes(tiny_model):
    data = b"Alice was beginning to get very tired of sitting by her sister on the bank. " * 20
    kw = {"model": tiny_model, "window": 16, "sinks": 2, "threads": 1, "streams": 3,
          "prime": 8}
    ours = llmzip.compress(data, **kw)
    assert jit.available()
    with jit.disabled():
        assert llmzip.compress(data, **kw) == ours
        assert llmzip.decompress(ours, model=tiny_model) == data
    assert llmzip.decompress(ours, model=tiny_model) == data


def test_configure_sets_the_fused_kernels_threads_too():
    """--threads N: the numba loops use N threads of the pool, not all of it."""
    import numba

    from llmzip.numeric.products import configure

    before = torch.get_num_threads()
    try:
        configure("cpu", 1)
        assert (numba.get_num_threads(), torch.get_num_threads(), jit.threads_for(8)) == (1, 1, 1)
        configure("cpu", 64)
        assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
    finally:
        configure("cpu", before)


@pytest.mark.parametrize("seed", range(6))
def test_recall_voters_are_the_reference_s(seed):
    """fused.voters (one pass, a running k-th best) chooses the reference's voters: every
    entry at least as similar as the k-th, ties included (repeated states, a zero query)."""
    from llmzip.mixing.recall import Recall

    assert selfcheck.enable()
    rng = np.random.default_rng(seed)
    pair = [Recall(8, 48.0), Recall(8, 48.0)]
    states = rng.normal(size=(40, 24))
    for step in range(12):
        h = states[rng.integers(0, 40 if seed % 2 else 6, size=5)]  # repeats: ties
        if step == 5:
            h[0] = 0.0
        y = rng.integers(0, 30, size=5)
        got = pair[0].predict(h)
        with jit.disabled():
            ref = pair[1].predict(h)
        assert all(np.array_equal(a, b) for a, b in zip(got, ref))
        for r in pair:
            r.update(y)
    # the ties were there: some query had more than K entries at its K-th cosine
    q = pair[0]._keys_of(states[:6])
    cos = q.astype(np.float64) @ pair[0].stored().T.astype(np.float64)
    assert seed % 2 or (cos >= np.sort(cos, axis=1)[:, -8:-7]).sum(axis=1).max() > 8
