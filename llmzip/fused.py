"""Fused CPU kernels of the exact engine (format 3): the same bits as the torch reference, in a
few calls per layer instead of a few hundred small torch ops.

The torch code in engine.py, mixer.py and bias.py is the specification of the file format; each
kernel here computes exactly what its torch reference computes, on numpy views of the same
tensors (zero-copy), so which one ran is never recorded in a file. The rules that make the bits
equal:

- every operation is the one IEEE 754 operation the reference makes, in the reference's dtype
  (float32 constants are written ``F32(...)``: numba would otherwise promote them to float64)
  and in the reference's order; ``np.rint`` is torch.round (half to even);
- no fastmath: nothing is reassociated or contracted into a fused multiply-add (a start-up
  check compares ``a * b + c`` with numpy's separate operations);
- only sums of integers, exact in any order, are reordered (and the products ``256 * x``,
  exact, may be fused).

:func:`available` says whether the kernels may be used: numba imports, ``LLMZIP_FUSED`` is not
``0``, and the start-up self-check of fusedcheck.py (every kernel against its torch reference
on small adversarial inputs: zero rows, huge outliers, ties at .5, the int8 extremes), which
model.load runs, passed; else the engine runs its torch code, silently. Compiled kernels are
cached in ``<llmzip cache>/numba`` (numba's ``NUMBA_CACHE_DIR``, unless it is set).
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import numpy as np
import torch

ENV = "LLMZIP_FUSED"  # "0": always the torch reference

if "NUMBA_CACHE_DIR" not in os.environ:
    from llmzip.cache import cache_dir

    os.environ["NUMBA_CACHE_DIR"] = str(cache_dir() / "numba")
    _CACHE_DIR: str | None = os.environ["NUMBA_CACHE_DIR"]
else:
    _CACHE_DIR = None

try:
    import numba
    from numba import njit, prange
except ImportError:  # the torch reference only
    numba = None
    prange = range

    def njit(*args, **kwargs):
        return lambda f: f
else:
    if _CACHE_DIR is not None:  # numba was imported before us: its config is already read
        numba.config.CACHE_DIR = _CACHE_DIR

F32, F64 = np.float32, np.float64
QMAX = F32(32639.0)  # engine.QMAX
KV_MAX = F32(127.0)  # engine.KV_MAX
TINY = F32(2.0**-100)  # engine.TINY
_JIT = {"cache": True, "nogil": True, "error_model": "numpy", "boundscheck": False}
_PAR = {**_JIT, "parallel": True}  # outer loops split into contiguous chunks, one per thread

# ------------------------------------------------------------------------------ kernels
# Written so that LLVM vectorises them without any fast-math flag: maxima are taken over the
# float32 bit patterns as integers (an integer max reduction; the bits of |x| order like |x|,
# and ``b ^ ((b >> 31) & 0x7fffffff)`` orders signed floats), exact sums of integers are
# int64 sums, table lookups get loops of their own, everything else is element-wise. The
# outer loops (rows, heads) are split into one contiguous chunk per thread: every value is
# computed by one thread in one order, so the thread count changes nothing. ``chunks``: how
# many (:func:`_chunks`: one per numba thread).

_SIGN = np.int32(0x7FFFFFFF)


@njit(**_JIT)
def _part(c, chunks, items):
    """The outer iterations [start, stop) of chunk c."""
    return c * items // chunks, (c + 1) * items // chunks


@njit(**_JIT)
def _float_of(bits, scratch):
    """The float32 with these bits (scratch: an int32 [1] array)."""
    scratch[0] = bits
    return scratch.view(np.float32)[0]


@njit(**_JIT)
def _absmax(x, scratch):
    """_scale_of's ``x.abs().amax().clamp(min=TINY)`` of a contiguous 1-D float32 array."""
    xi = x.view(np.int32)
    m = np.int32(0)
    for k in range(xi.shape[0]):
        a = xi[k] & _SIGN
        if a > m:
            m = a
    v = _float_of(m, scratch)
    if v < TINY:
        v = TINY
    return v


@njit(**_JIT)
def _max(x, scratch):
    """``x.amax()`` of a contiguous 1-D float32 array (not empty, no NaN)."""
    xi = x.view(np.int32)
    m = np.int32(-(1 << 31))
    for k in range(xi.shape[0]):
        b = xi[k]
        key = b ^ ((b >> 31) & _SIGN)
        if key > m:
            m = key
    return _float_of(m ^ ((m >> 31) & _SIGN), scratch)


@njit(**_JIT)
def _table_index(d, last):
    """A rounded, non-negative table position clamped to the last entry, as an index (NaN:
    the last entry; never an index outside the table)."""
    d = d if d <= last else last
    d = d if d >= 0 else 0
    return np.uint32(np.int32(d))


@njit(**_JIT)
def _split(x, s, hi, lo):
    """engine._pieces of one row given its scale: q = round(x / s) = 256 hi + lo."""
    for k in range(x.shape[0]):
        q = np.int32(np.rint(x[k] / s))
        h = (q + 128) >> 8  # floor((q + 128) / 256): exact integers
        hi[k] = h
        lo[k] = q - (h << 8)


@njit(**_JIT)
def _input_row(row, gain, use_gain, eps, hi, lo, y, scratch):
    """linear_input of one row; returns its factor."""
    K = row.shape[0]
    s = _absmax(row, scratch) / QMAX
    if not use_gain:
        _split(row, s, hi, lo)
        return s
    ss = np.int64(0)
    for k in range(K):
        q = np.int64(np.rint(row[k] / s))
        ss += q * q  # exact
    s64 = F64(s)
    ms = F64(ss) * s64  # F64(ss): exact, below 2**53
    ms = ms * s64
    ms = ms / F64(K)
    inv_rms = F32(F64(1.0) / np.sqrt(ms + eps))
    for k in range(K):
        y[k] = row[k] * gain[k]
    s = _absmax(y, scratch) / QMAX
    _split(y, s, hi, lo)
    return s * inv_rms


@njit(**_PAR)
def linear_input(x, gain, use_gain, eps, out, scale, chunks):
    """The operand of IntLinear's product and its row factor, for x [B, K] float32.

    ``use_gain`` False: ``IntLinear(x)``: out [2B, K] = the pieces of x (hi rows, then lo
    rows; int8 or float32), scale [B] = their scale. ``use_gain`` True: ``normed_linear``: the
    pieces of ``x * gain`` and scale = their scale times float32(1 / rms(x)), 1 / rms from the
    exact sum of squares of round(x / scale_x)."""
    B, K = x.shape
    for c in prange(chunks):
        y = np.empty(K, np.float32)
        scratch = np.empty(1, np.int32)
        start, stop = _part(c, chunks, B)
        for b in range(start, stop):
            scale[b] = _input_row(x[b], gain, use_gain, eps, out[b], out[B + b], y, scratch)


@njit(**_PAR)
def linear_output(p, scale, w_scale, bias, use_bias, y, chunks):
    """IntLinear's epilogue: p [2B, N] (int32 exact sums, or float32 from the float32 kernel)
    -> y [B, N] = ((float(P_lo) + 256 float(P_hi)) * scale[b]) * w_scale[n] (+ bias[n])."""
    B, N = y.shape
    for c in prange(chunks):
        start, stop = _part(c, chunks, B)
        for b in range(start, stop):
            s = scale[b]
            hi, lo, out = p[b], p[B + b], y[b]
            if use_bias:
                for n in range(N):
                    v = F32(lo[n]) + F32(256.0) * F32(hi[n])
                    v = v * s
                    v = v * w_scale[n]
                    out[n] = v + bias[n]
            else:
                for n in range(N):
                    v = F32(lo[n]) + F32(256.0) * F32(hi[n])
                    v = v * s
                    out[n] = v * w_scale[n]


@njit(**_JIT)
def _silu_row(x, out, poly, bits, pow2):
    """silu of one (contiguous) row."""
    N = x.shape[0]
    for j in range(N):
        t = -x[j]
        t = F32(-87.0) if t < F32(-87.0) else t
        t = F32(88.0) if t > F32(88.0) else t
        n = np.rint(t * F32(1.4426950408889634))
        r = t - n * F32(0.693145751953125)
        r = r - n * F32(1.4286068203094172e-06)
        e = F32(1.0 / 5040)  # exactmath._EXP32_COEFFS, from the top
        e = e * r
        e = e + F32(1.0 / 720)
        e = e * r
        e = e + F32(1.0 / 120)
        e = e * r
        e = e + F32(1.0 / 24)
        e = e * r
        e = e + F32(1.0 / 6)
        e = e * r
        e = e + F32(0.5)
        e = e * r
        e = e + F32(1.0)
        e = e * r
        e = e + F32(1.0)
        poly[j] = e
        k = np.int32(n)
        k = -126 if k < -126 else k
        k = 127 if k > 127 else k
        bits[j] = (k + 127) << 23  # 2.0**k (exactmath.pow2_32)
    for j in range(N):
        e = poly[j] * pow2[j]
        out[j] = x[j] / (e + F32(1.0))


@njit(**_PAR)
def silu(x, y, chunks):
    """engine.silu, ``x / (exactmath.exp32(-x) + 1)``, of x [B, N] float32 (any strides)
    into y [B, N]: exp32's clamp, range reduction and polynomial, operation for operation."""
    B, N = x.shape
    for c in prange(chunks):
        poly = np.empty(N, np.float32)
        bits = np.empty(N, np.int32)
        row = np.empty(N, np.float32)
        start, stop = _part(c, chunks, B)
        for b in range(start, stop):
            for j in range(N):
                row[j] = x[b, j]
            _silu_row(row, y[b], poly, bits, bits.view(np.float32))


@njit(**_JIT)
def _quantize_kv(x, s, out):
    """round(x / s) of a key or value vector."""
    for d in range(x.shape[0]):
        out[d] = np.rint(x[d] / s)


@njit(**_JIT)
def _attention_row(x, cos, sin, H, G, sink, write_sink, kt, k_scale, v, v_scale, slot, pieces,
                   q_scale, rot, tmp, scratch):
    """attention_input of one stream: x [(H + 2G) D], the others of that stream."""
    D = cos.shape[0]
    half = D // 2
    R = H // G
    for h in range(H + G):
        o = h * D
        for d in range(half):  # x * cos + roll(x, D/2) * sin
            rot[d] = x[o + d] * cos[d] + x[o + d + half] * sin[d]
        for d in range(half, D):
            rot[d] = x[o + d] * cos[d] + x[o + d - half] * sin[d]
        if h < H:
            g, r = h // R, h % R
            s = _absmax(rot, scratch) / QMAX
            _split(rot, s, pieces[g, r], pieces[g, R + r])
            q_scale[g, r, 0] = s
        else:
            g = h - H
            if write_sink:
                for d in range(D):
                    sink[g, slot, d] = x[o + d]
            s = _absmax(rot, scratch) / KV_MAX
            _quantize_kv(rot, s, tmp)
            for d in range(D):
                kt[g, d, slot] = tmp[d]
            k_scale[g, slot] = s
    for g in range(G):
        o = (H + G + g) * D
        vec = x[o:o + D]
        s = _absmax(vec, scratch) / KV_MAX
        _quantize_kv(vec, s, v[g, slot])
        v_scale[g, slot] = s


@njit(**_PAR)
def attention_input(qkv, cos, sin, H, G, sink, write_sink, kt, k_scale, v, v_scale, slot,
                    pieces, q_scale, chunks):
    """Engine.attention before the scores, for one layer: qkv [B, (H + 2G) D] -> the
    unrotated keys to sink [B, G, S, D][.., slot] (if write_sink), the rotated keys quantised
    to kt [B, G, D, W][.., slot] with k_scale [B, G, W][.., slot], the values to
    v [B, G, W, D] and v_scale, the rotated queries' pieces [B, G, 2R, D] (hi rows, then lo
    rows) and their scale q_scale [B, G, R, 1]."""
    B = qkv.shape[0]
    D = cos.shape[0]
    for c in prange(chunks):
        rot = np.empty(D, np.float32)
        tmp = np.empty(D, np.float32)
        scratch = np.empty(1, np.int32)
        start, stop = _part(c, chunks, B)
        for b in range(start, stop):
            _attention_row(qkv[b], cos, sin, H, G, sink[b], write_sink, kt[b], k_scale[b],
                           v[b], v_scale[b], slot, pieces[b], q_scale[b], rot, tmp, scratch)


@njit(**_JIT)
def _weights_group(s2, k_scale, q_scale, step, table, v_scale, a, f, s, idx, ks, vs, scratch):
    """attention_weights of one (stream, key group): s2 [2R, n], k_scale [n], q_scale
    [R, 1], v_scale [n] -> a [R, n], f [R, 1]."""
    R = s2.shape[0] // 2
    n = s2.shape[1]
    last = F32(table.shape[0] - 1)
    for j in range(n):
        ks[j] = k_scale[j]
        vs[j] = v_scale[j]
    vmax = F64(_max(vs, scratch))
    for r in range(R):
        hi, lo, out = s2[r], s2[R + r], a[r]
        for j in range(n):
            s[j] = (lo[j] + F32(256.0) * hi[j]) * ks[j]
        top = _max(s, scratch)
        c0 = q_scale[r, 0] * step
        for j in range(n):  # (separate loops: each one vectorises)
            idx[j] = _table_index(np.rint((top - s[j]) * c0), last)
        for j in range(n):
            s[j] = table[idx[j]]
        z = np.int64(0)
        for j in range(n):
            z += np.int32(s[j])  # exact: integers <= 2**24
        zf = F64(z)
        c = F64(1 << 16) / (zf * vmax)
        cf = F32(c)
        for j in range(n):
            w = s[j] * vs[j]
            out[j] = np.rint(w * cf)
        f[r, 0] = F32(F64(1.0) / (F64(cf) * zf))


@njit(**_PAR)
def attention_weights(s2, k_scale, q_scale, step, table, v_scale, a, f, chunks):
    """Engine.attend between its two products: the exact scores s2 [B, G, 2R, n] (hi rows,
    then lo rows) with the key scales [B, G, n], the query scales [B, G, R, 1] and the value
    scales [B, G, n] -> the integer weights a [B, G, R, n] and the output factor f [B, G, R, 1]
    (out = (a @ values) * f)."""
    B, G, _, n = s2.shape
    for c in prange(chunks):
        s = np.empty(n, np.float32)
        idx = np.empty(n, np.uint32)
        ks = np.empty(n, np.float32)
        vs = np.empty(n, np.float32)
        scratch = np.empty(1, np.int32)
        start, stop = _part(c, chunks, B * G)
        for bg in range(start, stop):
            b, g = bg // G, bg % G
            _weights_group(s2[b, g], k_scale[b, g], q_scale[b, g], step, table, v_scale[b, g],
                           a[b, g], f[b, g], s, idx, ks, vs, scratch)


@njit(**_JIT)
def _frequency_row(x, bias, use_bias, step, table, f, row, idx, scratch):
    """frequencies of one row; returns its total."""
    V = x.shape[0]
    last = F32(table.shape[0] - 1)
    if use_bias:
        for j in range(V):
            row[j] = x[j] + bias[j]
    else:
        for j in range(V):
            row[j] = x[j]
    top = _max(row, scratch)
    for j in range(V):
        idx[j] = _table_index(np.rint((top - row[j]) * step), last)
    for j in range(V):
        f[j] = table[idx[j]]
    t = np.int64(0)
    for j in range(V):
        t += np.int64(f[j])  # exact: integers below 2**53
    return F64(t)


@njit(**_PAR)
def frequencies(x, bias, use_bias, shared, step, table, f, total, chunks):
    """mixer.lm_frequencies of ``x + bias`` (Bias.apply, float32) for logits x [n, V]
    float32: f [n, V] float64 integers and their exact row sums total [n]. bias [V'] rows:
    one shared row (shared) or one per stream."""
    n, V = x.shape
    for c in prange(chunks):
        start, stop = _part(c, chunks, n)  # this chunk's rows, and its buffers
        row, idx = np.empty(V, np.float32), np.empty(V, np.uint32)
        scratch = np.empty(1, np.int32)
        for i in range(start, stop):
            total[i] = _frequency_row(x[i], bias[0 if shared else i], use_bias, step, table,
                                      f[i], row, idx, scratch)


@njit(**_PAR)
def scale_rows(f, k, p, chunks):
    """p [n, V] = f * k[:, None] (float64, one rounding each)."""
    n, V = f.shape
    for c in prange(chunks):
        start, stop = _part(c, chunks, n)
        for i in range(start, stop):
            ki, fi, pi = k[i], f[i], p[i]
            for j in range(V):
                pi[j] = fi[j] * ki


@njit(**_PAR)
def bias_step(f, c, y, ry, lr, adaptive, b, g2, b_out, g2_out, b32, chunks):
    """Bias.update for a shared bias (format 3): the gradient in units of 2**-40,
    g = sum_i round(f[i] * c[i]) - sum over i of ry[i] at y[i] (exact integers), times 2**-40,
    then the AdaGrad step (or SGD) and the clip, into b_out, g2_out, b32 (= float32(b))."""
    n, V = f.shape
    g = np.zeros(V, np.float64)
    for part in prange(chunks):
        start, stop = _part(part, chunks, V)
        for i in range(n):
            ci, fi = c[i], f[i]
            for j in range(start, stop):
                g[j] += np.rint(fi[j] * ci)  # exact: integers below 2**53
        for i in range(n):
            if start <= y[i] < stop:
                g[y[i]] -= ry[i]
        for j in range(start, stop):
            gj = g[j] * F64(1.0 / (1 << 40))
            if adaptive:
                s = g2[j] + gj * gj
                g2_out[j] = s
                t = b[j] - lr * gj / np.sqrt(F64(0.25) + s)
            else:
                t = b[j] - gj * lr
            t = F64(-8.0) if t < F64(-8.0) else t
            t = F64(8.0) if t > F64(8.0) else t
            b_out[j] = t
            b32[j] = F32(t)


@njit(cache=True)
def _fma_probe(a, b, c, out):
    """a * b + c, element by element: must be two roundings (no contraction into an FMA)."""
    for i in range(a.shape[0]):
        out[i] = a[i] * b[i] + c[i]


# ------------------------------------------------------------------------------ wrappers

_NONE32 = np.zeros(1, np.float32)
_NONE64 = np.zeros(1, np.float64)
_NONE2D = np.zeros((1, 1), np.float32)
_STATE: dict[str, bool | int] = {"off": 0}
_LOCAL = threading.local()  # per thread: scratch buffers that never leave a call


def available() -> bool:
    """Whether the fused kernels may run in this process: numba is there, LLMZIP_FUSED is not
    0, and fusedcheck.enable() found every kernel equal to its torch reference."""
    return (not _STATE["off"] and numba is not None and os.environ.get(ENV) != "0"
            and _STATE.get("ok") is True)


@contextmanager
def disabled():
    """Inside: the torch reference everywhere (the self-check's references, tests)."""
    _STATE["off"] += 1
    try:
        yield
    finally:
        _STATE["off"] -= 1


def usable(t: torch.Tensor) -> bool:
    """Whether to take the fused path for tensors like t (on the CPU, kernels available)."""
    return t.is_cpu and available()


def _chunks(items: int) -> int:
    """Chunks to split a kernel's ``items`` outer iterations into: one per thread (torch's
    thread count, which kernels.configure sets, within numba's pool)."""
    return max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS, items))


def _scratch(key: tuple, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
    """A buffer of this thread for one call site (``key``), reused while its shape stays."""
    pool = _LOCAL.__dict__.setdefault("pool", {})
    t = pool.get(key)
    if t is None or t.shape != shape:
        with torch.inference_mode(False):  # a normal tensor: usable in and out of that mode
            t = pool[key] = torch.empty(shape, dtype=dtype)
    return t


def linear(lin, x: torch.Tensor, gain: torch.Tensor | None = None,
           eps: float = 0.0) -> torch.Tensor:
    """``lin(x)`` (engine.IntLinear) or, with ``gain``, ``Engine.normed_linear(x, lin, gain)``
    with ``rms_eps = eps``: x [B, K] float32 -> [B, N] float32."""
    b, k = x.shape
    n = lin.scale.shape[0]
    dtype = lin.products.activation_dtype()
    a = _scratch(("a", k, dtype), (2 * b, k), dtype)
    scale = np.empty(b, np.float32)
    chunks = _chunks(b)
    linear_input(x.numpy(), _NONE32 if gain is None else gain.numpy(), gain is not None,
                 float(eps), a.numpy(), scale, chunks)
    p = lin.products.exact(a, lin.w, _scratch(("p", n), (2 * b, n), torch.int32))
    y = torch.empty((b, n), dtype=torch.float32)
    bias = lin.bias
    linear_output(p.numpy(), scale, lin.scale.numpy(), _NONE32 if bias is None else bias.numpy(),
                  bias is not None, y.numpy(), chunks)
    return y


def silu_(x: torch.Tensor) -> torch.Tensor:
    """Engine.silu of x [B, N] float32."""
    y = torch.empty(x.shape, dtype=torch.float32)
    silu(x.numpy(), y.numpy(), _chunks(x.shape[0]))
    return y


def attention(engine, cache, i: int, pos: tuple, qkv: torch.Tensor) -> torch.Tensor:
    """Engine.attention: layer i's keys and values into the cache, and the attention output
    [B, H D] of qkv [B, (H + 2G) D]."""
    slot, n, cos, sin = pos
    c = engine.config
    b, H, G, D = qkv.shape[0], c.num_heads, c.num_kv_heads, c.head_dim
    R = H // G
    pieces = _scratch(("pieces",), (b, G, 2 * R, D), torch.float32)
    q_scale = _scratch(("q_scale",), (b, G, R, 1), torch.float32)
    kt, k_scale, v, v_scale = (t.numpy()[i] for t in (cache.kt, cache.k_scale, cache.v,
                                                       cache.v_scale))
    attention_input(qkv.numpy(), cos.numpy(), sin.numpy(), H, G, cache.sink_keys.numpy()[i],
                    slot < cache.sinks, kt, k_scale, v, v_scale, slot, pieces.numpy(),
                    q_scale.numpy(), _chunks(b))
    out = attend(engine, pieces, q_scale, torch.from_numpy(kt[..., :n]),
                 torch.from_numpy(k_scale[..., :n]), torch.from_numpy(v[:, :, :n]),
                 torch.from_numpy(v_scale[..., :n]))
    return out.view(b, H * D)


def attend(engine, pieces: torch.Tensor, q_scale: torch.Tensor, keys_t: torch.Tensor,
           k_scale: torch.Tensor, values: torch.Tensor, v_scale: torch.Tensor) -> torch.Tensor:
    """Engine.attend (the same arguments): the two exact products in torch, the weights
    between them fused."""
    b, G, R2, _ = pieces.shape
    n = keys_t.shape[-1]
    s2 = torch.matmul(pieces, keys_t, out=_scratch(("s2",), (b, G, R2, n), torch.float32))
    a = _scratch(("weights",), (b, G, R2 // 2, n), torch.float32)
    f = _scratch(("factor",), (b, G, R2 // 2, 1), torch.float32)
    attention_weights(s2.numpy(), k_scale.numpy(), q_scale.numpy(), F32(engine.score_step),
                      engine.table.numpy(), v_scale.numpy(), a.numpy(), f.numpy(),
                      _chunks(b * G))
    out = torch.matmul(a, values)  # exact: 127 * sum(a) < 2**24
    return out.mul_(f)


def lm_frequencies(x: torch.Tensor, bias: torch.Tensor | None,
                   table: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """mixer.lm_frequencies(Bias.apply(x)) of logits x [n, V] float32 with the bias b32
    ([V] shared or [streams, V]; None: no bias) and the frequency table (float64) ->
    (f [n, V] float64, their row sums [n, 1] float64)."""
    n, V = x.shape
    f = torch.empty((n, V), dtype=torch.float64)
    total = torch.empty((n, 1), dtype=torch.float64)
    if bias is None:
        b, shared = _NONE2D, True
    elif bias.ndim == 1:
        b, shared = bias.numpy()[None], True
    else:
        b, shared = bias.numpy(), False
    frequencies(x.numpy(), b, bias is not None, shared, F32(256.0), table, f.numpy(),
                total.numpy()[:, 0], _chunks(n))
    return f, total


def mixture(f: torch.Tensor, k: np.ndarray) -> np.ndarray:
    """``f * k[:, None]`` (float64 [n, V], one rounding per entry) as a new array."""
    p = np.empty(tuple(f.shape), dtype=np.float64)
    scale_rows(f.numpy(), np.ascontiguousarray(k, dtype=np.float64), p, _chunks(len(p)))
    return p


def bias_update(bias, f: torch.Tensor, c: torch.Tensor, y: torch.Tensor,
                ry: torch.Tensor) -> None:
    """Bias.update of a shared bias (format 3), given its per-row factors c [n, 1] and
    rounded responsibilities ry [n] in gradient units: sets bias.b, g2 and b32."""
    b_out = torch.empty_like(bias.b)
    adaptive = bias.g2 is not None
    g2_out = torch.empty_like(bias.g2) if adaptive else None
    b32 = torch.empty(bias.b.shape, dtype=torch.float32)
    bias_step(f.numpy(), c.numpy()[:, 0], y.numpy(), ry.numpy(), float(bias.lr), adaptive,
              bias.b.numpy(), bias.g2.numpy() if adaptive else _NONE64, b_out.numpy(),
              g2_out.numpy() if adaptive else _NONE64, b32.numpy(),
              _chunks(bias.b.shape[0] // 4096 + 1))
    bias.b, bias.b32 = b_out, b32
    if adaptive:
        bias.g2 = g2_out


def contraction_free(size: int = 4096, seed: int = 0) -> bool:
    """Whether the kernels' ``a * b + c`` is two roundings, as numpy's separate operations
    are (a fused multiply-add would differ on most of these random values)."""
    rng = np.random.default_rng(seed)
    a, b, c = (rng.standard_normal(size).astype(np.float32) for _ in range(3))
    out = np.empty(size, np.float32)
    _fma_probe(a, b, c, out)
    ref = a * b
    ref += c
    return bool(np.array_equal(out.view(np.int32), ref.view(np.int32)))
