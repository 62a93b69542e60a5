"""The start-up self-check of the fused kernels (engine/kernels.py, mixing/kernels.py,
numeric/linear.py, numeric/intmm.py, rangecoder.py): each against its reference
(engine/exact.py, mixing/mixer.py, mixing/bias.py, rangecoder.py) on small adversarial
inputs. :func:`enable` runs it once per process (stream.load_model calls it) and lets
jit.available() say yes only if every kernel gave the same bits; any failure, a numba error
included, leaves the references in charge."""

from __future__ import annotations

import os

import numpy as np
import torch

from llmzip.codec import rangecoder
from llmzip.codec.rangecoder import split_sums
from llmzip.engine import exact as E
from llmzip.engine.kernels import attend, attention, attention_steps, silu_
from llmzip.engine.llama import LlamaConfig
from llmzip.format.mixconfig import MixConfig
from llmzip.mixing import kernels
from llmzip.mixing import mixer as M
from llmzip.mixing.bias import Bias
from llmzip.mixing.kernels import bias_update, lm_frequencies, mixture
from llmzip.mixing.recall import K as RECALL_K
from llmzip.mixing.recall import Recall
from llmzip.mixing.recall import _inv_norm as recall_inv_norm
from llmzip.numeric import jit
from llmzip.numeric.jit import contraction_free
from llmzip.numeric.products import Products, exact_kernels


def enable() -> bool:
    """Run the self-check once (unless numba is missing or LLMZIP_FUSED=0) and record its
    verdict for jit.available(); the verdict. LLMZIP_FUSED is read here, when the process
    loads its first model."""
    if jit.numba is None or os.environ.get(jit.ENV) == "0":
        return False
    if "ok" not in jit.STATE:
        try:
            jit.STATE["ok"] = self_check()
        except Exception:  # any failure (a numba error, a mismatch): the torch reference
            jit.STATE["ok"] = False
    return jit.available()


def bound_rows(k: int = 1536) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations [3, k] and int8 weights [16 * 17, k] whose pieces' products pass 2**24, so
    that ``f32(P_lo) + 256 f32(P_hi)`` differs from ``f32(P)`` in many entries (numeric/intmm.py's
    bound): rows near their largest value against columns of 127 with a few other entries."""
    cols = []
    for t in range(-127, 128, 15):
        w = torch.full((16, k), 127, dtype=torch.int8)
        w[:, 0] = t
        w[:, 1:16] = torch.arange(-120, -105, dtype=torch.int8)
        w[:, 5] = torch.arange(16, dtype=torch.int8)
        cols.append(w)
    x = torch.ones(3, k)
    x[1, 0], x[2, 3] = 0.5, 0.25
    return x, torch.cat(cols)


def adversarial(rows: int, cols: int, seed: int = 0, top: float = 32639.0,
                huge: float = 3e37) -> torch.Tensor:
    """float32 [rows, cols] test rows for quantisation (rows >= 8): a zero row, a huge outlier
    (-huge) among tiny values, exact ties at .5 after scaling to ``top`` (32639: 16-bit pieces, 127:
    int8 vectors), the extremes +-top (and 256 h - 128, where lo = -128), subnormals, then
    random rows of mixed magnitude."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, cols, generator=gen) * torch.exp2(
        torch.randint(-12, 12, (rows, 1), generator=gen).float())
    x[0] = 0.0
    x[1] = torch.randn(cols, generator=gen) * 1e-6
    x[1, cols // 2] = -huge
    t = int(top)
    k = torch.randint(-t, t, (cols,), generator=gen).float() + 0.5
    x[2] = k * 2.0**-8
    x[2, 0] = top * 2.0**-8  # the scale is 2**-8 exactly: the others are ties at .5
    x[3] = torch.randint(-t, t + 1, (cols,), generator=gen).float()
    x[3, :2] = torch.tensor([top, -top])
    if t > 256:
        x[3, 2:4] = torch.tensor([-128.0, 256.0 * 5 - 128])
    x[4] = torch.randn(cols, generator=gen) * 1e-39  # subnormals
    x[5] = -x[2]
    x[6] = 0.0
    x[6, -1] = -1.0  # one value, negative
    x[7] = torch.randn(cols, generator=gen) * 1e4
    return x


def _same(a, b) -> bool:
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(
        a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


def self_check() -> bool:
    """Every kernel against its torch reference (engine/exact.py, mixing/mixer.py,
    mixing/bias.py, rangecoder.py) on small adversarial inputs; True if all give the same bits."""
    return not failures()


def failures() -> list[str]:
    """The names of the kernels that differ from their torch references on the self-check's
    inputs (empty: all the same bits)."""
    with jit.disabled():  # the references take their torch paths
        return _failures()


def _failures() -> list[str]:
    if not contraction_free():
        return ["fma"]
    gen = torch.Generator().manual_seed(7)
    bad: list[str] = []

    def check(name: str, same: bool) -> None:
        if not same and name not in bad:
            bad.append(name)

    config = LlamaConfig(vocab_size=8, hidden_size=64, intermediate_size=8, num_layers=2,
                         num_heads=4, num_kv_heads=2, head_dim=16, rope_theta=10000.0,
                         rms_eps=1e-5, tie_embeddings=True)
    engine = E.Engine(config)
    with torch.inference_mode():
        # linear and normed_linear, with and without bias
        x = adversarial(10, 96, seed=1)
        gain = torch.randn(96, generator=gen)
        gain[:8] = torch.tensor([1.0, 2.0, 0.5, -1.0, 0.0, 1e-3, 300.0, 1.0])
        reference = Products("cpu", "float32")
        for bias in (None, torch.randn(40, generator=gen)):
            w = torch.randint(-127, 128, (40, 96), generator=gen, dtype=torch.int8)
            w[0], w[1] = 127, -127
            w_scale = torch.rand(40, generator=gen) * 0.01
            ref = E.IntLinear(w, w_scale, reference, bias)
            for name in exact_kernels("cpu"):
                lin = E.IntLinear(w, w_scale, Products("cpu", name), bias)
                check("linear", _same(ref(x), lin(x)) and _same(ref(x), E.fused_linear(lin, x)))
                check("normed_linear", _same(engine.normed_linear(x, ref, gain),
                                             E.fused_linear(lin, x, gain, 1e-5)))
        # intmm's rows past its bound (an inner dimension above kernels.F32_CHUNK)
        if "int16" in exact_kernels("cpu"):
            x, w = bound_rows()
            ref = E.IntLinear(w, torch.ones(w.shape[0]), reference)
            lin = E.IntLinear(w, torch.ones(w.shape[0]), Products("cpu", "int16"))
            check("linear", _same(ref(x), E.fused_linear(lin, x)))
        # silu, on a strided view like engine/llama.py's chunk
        gu = torch.cat([adversarial(8, 64, seed=2) * 4, torch.randn(8, 64, generator=gen)], 1)
        gu[7, :6] = torch.tensor([-100.0, 100.0, 87.5, -88.5, -0.0, 1e-30])
        gate = gu.chunk(2, dim=-1)[0]
        check("silu", _same(E.Engine.silu(gate), silu_(gate)))
        # attention: a tiny model's engine; the sinks slot (no rotation at t = 0) and later
        caches = [engine.new_cache(config, 8, 6, 2) for _ in range(2)]
        qkvs = [adversarial(8, 128, seed=10 + t, top=127.0 if t % 2 else 32639.0, huge=1e4)
                for t in range(9)]
        refs = []
        for qkv in qkvs:
            outs = []
            for j, cache in enumerate(caches):
                pos = engine.begin(cache)
                outs.append([attention(engine, cache, i, pos, qkv) if j
                             else engine.attention(cache, i, pos, qkv) for i in range(2)])
                cache.t += 1
            refs.append(outs[0])
            check("attention", all(_same(a, b) for a, b in zip(*outs)))
            for k in E._CACHED:
                check(f"attention {k}", _same(getattr(caches[0], k), getattr(caches[1], k)))
        # the same steps three at a time (Llama.steps)
        run = engine.new_cache(config, 8, 6, 2)
        for t0 in range(0, 9, 3):
            pos = []
            for t in range(t0, t0 + 3):
                run.t = t
                pos.append(engine.begin(run))
            run.t = t0 + 3
            qkv = torch.cat(qkvs[t0:t0 + 3])
            for i in range(2):
                want = torch.cat([refs[t][i] for t in range(t0, t0 + 3)])
                check("attention_steps", _same(want, attention_steps(engine, run, i, pos, qkv)))
        for k in E._CACHED:
            check(f"attention_steps {k}", _same(getattr(caches[0], k), getattr(run, k)))
        # the weights between the products, with ties: integer scores, k_scale 1,
        # q_scale * score_step = 1/2
        b, G, R, n = 3, 2, 2, 40
        pieces = torch.zeros(b, G, 2 * R, 16)
        pieces[:, :, R:] = torch.randint(-3, 4, (b, G, R, 16), generator=gen).float()
        keys = torch.randint(-127, 128, (b, G, 16, n), generator=gen).float()
        values = torch.randint(-127, 128, (b, G, n, 16), generator=gen).float()
        k_scale = torch.ones(b, G, n)
        q_scale = torch.full((b, G, R, 1), 0.5 / engine.score_step)
        v_scale = torch.rand(b, G, n, generator=gen) + 0.5
        v_scale[0, 0] = 1.0
        ref = engine.attend(pieces, q_scale, keys, k_scale, values, v_scale)
        check("attend", _same(ref, attend(engine, pieces, q_scale, keys, k_scale, values,
                                          v_scale)))
        # a longer window in five rows: the scores' 64-slot passes, 16-slot tail, row groups
        n, R = 150, 5
        pieces = torch.randint(-127, 128, (1, 1, 2 * R, 16), generator=gen).float()
        keys = torch.randint(-127, 128, (1, 1, 16, n), generator=gen).float()
        values = torch.randint(-127, 128, (1, 1, n, 16), generator=gen).float()
        q_scale = torch.full((1, 1, R, 1), 1e-3)
        scales = torch.rand(2, 1, 1, n, generator=gen) + 0.5
        ref = engine.attend(pieces, q_scale, keys, scales[0], values, scales[1])
        check("attend 64", _same(ref, attend(engine, pieces, q_scale, keys, scales[0], values,
                                             scales[1])))
        # the mixer: frequencies (ties at 1/512), the mixture, the shared bias's step
        V = 300
        logits = torch.randint(-4000, 4000, (6, V), generator=gen).float() / 512
        logits[1] = 0.0
        logits[2, 5] = 1e30
        logits[3] = torch.randn(V, generator=gen) * 30
        table = M._table()
        for mix in (MixConfig(), MixConfig(bias_adaptive=False), MixConfig(lm_scale=240)):
            bias = Bias(V, mix, 6)
            fb = Bias(V, mix, 6)
            for _ in range(3):
                f = M.lm_frequencies(bias.apply(logits), mix.lm_scale)
                total = f.sum(dim=1, keepdim=True)
                f2, total2 = lm_frequencies(logits, fb.b32, table.numpy(), mix.lm_scale)
                check("lm_frequencies", _same(f, f2) and _same(total, total2))
                k = torch.rand(6, generator=gen, dtype=torch.float64).numpy() / total[:, 0].numpy()
                check("mixture", _same((f * torch.from_numpy(k)[:, None]).numpy(),
                                       mixture(f2, k)))
                y = torch.tensor([3, 3, 0, V - 1, 7, 3])
                resp = torch.rand(6, generator=gen, dtype=torch.float64)
                resp[0] = 1.0
                bias.update(f, total, y, resp)
                c, ry = fb.shared_factors(total2, resp)
                bias_update(fb, f2, c, y, ry)
                check("bias", _same(bias.b, fb.b) and _same(bias.b32, fb.b32)
                      and (bias.g2 is None or _same(bias.g2, fb.g2)))
        # the split coder's group sums: peaked, flat, tiny rows; V not a multiple of G
        p = torch.rand(5, 301, generator=gen, dtype=torch.float64).numpy()
        p /= p.sum(axis=1, keepdims=True)
        p[1] = 0.0
        p[1, 300] = 1.0
        p[2] = 1 / 301
        p[3, :7] = [1e-300, 5e-324, 2.0**-40, 2.0**-40 * (1 - 2.0**-52), 0.5, 1.0, 0.0]
        for G in (16, 32):
            check("split sums", all(_same(a, b) for a, b in zip(
                split_sums(p, G), rangecoder.fast_split_sums(p, G))))
        check("recall", _recall_same(gen))
    return bad


def _recall_same(gen: torch.Generator) -> bool:
    """Recall.predict's voters through kernels.voters against its reference: stored states
    with repeats (ties at the k-th cosine), a zero query, a query equal to a stored state."""
    rec = Recall(6, 48.0)
    for step in range(6):
        h = torch.randn(5, 24, generator=gen, dtype=torch.float64)
        if step % 2:
            h[1:3] = h[0]  # equal states: equal cosines
        rec.predict(h)
        rec.update(torch.randint(0, 9, (5,), generator=gen).numpy())
    queries = torch.randn(4, 24, generator=gen, dtype=torch.float64)
    queries[1] = 0.0
    queries[2] = h[0]
    ref = rec.predict(queries)
    q = rec._keys_of(queries)
    inv = recall_inv_norm(q)
    m = rec.size
    dots = (torch.from_numpy(q) @ torch.from_numpy(rec.stored()).T).numpy()
    if not np.array_equal(rec._dots(q), dots):  # intmm's 16-bit product of the keys
        return False
    rows, cols, sim = kernels.voters(dots, inv, rec.inv_norm[:m], RECALL_K)
    tok, votes = np.zeros_like(ref[0]), np.zeros_like(ref[1])
    got = rec._votes(len(q), rows, cols, sim, tok, votes)
    rec.update(np.zeros(4, dtype=np.int64))
    return all(np.array_equal(a, b) for a, b in zip(ref, got))
