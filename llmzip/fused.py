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

from llmzip.pairdot import padded_window, pair_keys, pair_values

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

    from llmzip.pairdot import dot16, madd4, prefetch, wsum64
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
_Q40 = F64(2.0**40)  # coder._SCALE
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
AHEAD = 256  # slots between the block attention reads and the block it asks the caches for


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
    """round(x / s) of a key or value vector (|x / s| <= 127: exact in int8)."""
    for d in range(x.shape[0]):
        out[d] = np.int8(np.rint(x[d] / s))


@njit(**_JIT)
def _pair(lo, hi):
    """Two int16 values as the int32 pair pairdot.madd4 reads (lo in the low half)."""
    return np.int32((np.int64(lo) & 0xFFFF) | (np.int64(hi) << 16))


@njit(**_JIT)
def _head_input(x, cos, sin, H, G, h, sink, write_sink, kp, k_scale, slot, qp, q_scale, rot,
                tmp, scratch, key_mul, key_div, scaled):
    """_attention_input of head h: a query head (h < H) or key head h - H."""
    D = cos.shape[0]
    half = D // 2
    R = H // G
    o = h * D
    for d in range(half):  # x * cos + roll(x, D/2) * sin
        rot[d] = x[o + d] * cos[d] + x[o + d + half] * sin[d]
    for d in range(half, D):
        rot[d] = x[o + d] * cos[d] + x[o + d - half] * sin[d]
    if scaled:
        if h < H:
            for d in range(D):
                rot[d] *= key_mul[h // R, d]
        else:
            for d in range(D):
                rot[d] *= key_div[h - H, d]
    if h < H:
        s = _absmax(rot, scratch) / QMAX
        for d in range(half):
            qp[h, d] = _pair(np.int32(np.rint(rot[2 * d] / s)),
                             np.int32(np.rint(rot[2 * d + 1] / s)))
        q_scale[h] = s
    else:
        g = h - H
        if write_sink:
            for d in range(D):
                sink[g, slot, d] = x[o + d]
        s = _absmax(rot, scratch) / KV_MAX
        _quantize_kv(rot, s, tmp)
        for d in range(D):
            kp[g, d >> 1, slot, d & 1] = tmp[d]
        k_scale[g, slot] = s


@njit(**_JIT)
def _value_input(x, H, G, g, D, vp, v_scale, slot, tmp, scratch):
    """_attention_input of value head g."""
    o = (H + G + g) * D
    s = _absmax(x[o:o + D], scratch) / KV_MAX
    _quantize_kv(x[o:o + D], s, tmp)
    for d in range(D):
        vp[g, slot >> 1, d, slot & 1] = tmp[d]
    v_scale[g, slot] = s


@njit(**_JIT)
def _attention_input(x, cos, sin, H, G, sink, write_sink, kp, k_scale, vp, v_scale, slot, qp,
                     q_scale, rot, tmp, scratch, key_mul, key_div, scaled, group):
    """Engine.attention before the scores, for one stream: x [(H + 2G) D] -> the unrotated
    keys to sink [G, S, D][.., slot] (if write_sink), the rotated keys quantised to kp
    [G, D/2, W, 2][.., slot, :] (int8) with k_scale [G, W][.., slot], the values to vp
    [G, W/2, D, 2][.., slot // 2, :, slot % 2] (int8) and v_scale, the rotated queries'
    16-bit integers (256 hi + lo of engine._pieces) as pairs qp [H, D/2] (_pair) and their
    scales q_scale [H]. With ``scaled``, the rotated queries of group g are multiplied by
    key_mul [G, D] and its keys by key_div (powers of two: exact). ``group`` >= 0: only that
    key group's queries, key and value (each head is computed on its own)."""
    D = cos.shape[0]
    R = H // G
    first, last = (0, G) if group < 0 else (group, group + 1)
    for g in range(first, last):
        for h in range(g * R, (g + 1) * R):
            _head_input(x, cos, sin, H, G, h, sink, write_sink, kp, k_scale, slot, qp,
                        q_scale, rot, tmp, scratch, key_mul, key_div, scaled)
    for g in range(first, last):
        _head_input(x, cos, sin, H, G, H + g, sink, write_sink, kp, k_scale, slot, qp,
                    q_scale, rot, tmp, scratch, key_mul, key_div, scaled)
    for g in range(first, last):
        _value_input(x, H, G, g, D, vp, v_scale, slot, tmp, scratch)


@njit(**_JIT)
def _attend_group(qp, q_scale, kp, k_scale, vp, v_scale, n, step, table, out, acc, s, idx, ks,
                  vs, a, ap, o, scratch):
    """Engine.attend of one (stream, key group): the 16-bit query integers as pairs qp
    [R, D/2] (_pair) with their scales q_scale [R], int8 keys kp [D/2, W, 2] and values
    vp [W/2, D, 2] (W a multiple of 16) with scales [W], the first n slots -> out [R, D]
    float32.

    Every product is an exact integer sum, through pairdot.madd4 (the same integers on every
    target): the scores ``sum q k`` (int32: |q k| D < 2**31) are the reference's
    ``256 P(hi) + P(lo)`` before its one rounding to float32; the value product ``sum a v``
    of the integer weights a >= 0 (sum(a) <= 2**16 + 1 + n / 2, so 127 sum(a) < 2**24, exact
    in float32 as the reference's) takes each a as its low 15 bits (one int16 of a pair) plus
    the rest, ``a & ~0x7fff``, which at most two weights have."""
    R, DP = qp.shape
    D = 2 * DP
    W = kp.shape[1]
    last = F32(table.shape[0] - 1)
    for j in range(n):
        ks[j] = k_scale[j]
        vs[j] = v_scale[j]
    vmax = F64(_max(vs[:n], scratch))
    nb = (n + 15) // 16 * 16  # <= W
    for r in range(R):
        ar = acc[r]
        qr = qp[r]
        for jb in range(0, nb, 16):
            if r == 0 and jb % 32 == 0 and jb + AHEAD < nb:  # (hints: the cache is cold)
                for dp in range(DP):
                    prefetch(kp, 2 * (dp * W + jb + AHEAD))
                for line in range(0, 32 * D, 64):
                    prefetch(vp, (jb + AHEAD) * D + line)
            dot16(ar, jb, kp, 2 * jb, 2 * W, qr, 0, DP)
    M = (n + 7) // 8 * 4  # pairs of slots, in blocks of four (<= W / 2)
    D64 = D - D % 64
    D16 = D - D % 16
    for r in range(R):
        ar = acc[r]
        for j in range(n):
            s[j] = F32(ar[j]) * ks[j]
        top = _max(s[:n], scratch)
        c0 = q_scale[r] * step
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
            a[j] = np.int32(np.rint(w * cf))
        for j in range(n, 2 * M):
            a[j] = 0
        big = np.int32(0)
        for m in range(M):
            a0, a1 = a[2 * m], a[2 * m + 1]
            ap[m] = (a0 & 0x7FFF) | ((a1 & 0x7FFF) << 16)
            big |= (a0 | a1) >> 15
        for d in range(D):
            o[d] = 0
        for d in range(0, D64, 64):
            wsum64(o, d, vp, 2 * d, 2 * D, ap, 0, M)
        for m in range(0, M, 4):
            if ap[m] | ap[m + 1] | ap[m + 2] | ap[m + 3]:  # (zero weights add nothing)
                for d in range(D64, D16, 16):
                    madd4(o, d, vp, 2 * (m * D + d), 2 * D, ap[m], ap[m + 1], ap[m + 2],
                          ap[m + 3])
                for d in range(D16, D):
                    for mm in range(m, m + 4):
                        o[d] += ((ap[mm] & 0xFFFF) * np.int32(vp[mm, d, 0])
                                 + (ap[mm] >> 16) * np.int32(vp[mm, d, 1]))
        if big:
            for j in range(n):
                h = a[j] & ~0x7FFF
                if h:
                    vj = vp[j >> 1]
                    for d in range(D):
                        o[d] += h * np.int32(vj[d, j & 1])
        f = F32(F64(1.0) / (F64(cf) * zf))
        for d in range(D):
            out[r, d] = F32(o[d]) * f


@njit(**_JIT)
def _input_buffers(H, D):
    """_attention_input's per-thread buffers: rot, tmp, qp, q_scale."""
    return (np.empty(D, np.float32), np.empty(D, np.int8), np.empty((H, D // 2), np.int32),
            np.empty(H, np.float32))


@njit(**_JIT)
def _attend_buffers(R, D, W):
    return (np.empty((R, W), np.int32), np.empty(W, np.float32), np.empty(W, np.uint32),
            np.empty(W, np.float32), np.empty(W, np.float32), np.empty(W, np.int32),
            np.empty(W // 2, np.int32), np.empty(D, np.int32), np.empty(1, np.int32))


@njit(**_PAR)
def attention_layer(qkv, cos, sin, H, G, sink, write_sink, kp, k_scale, vp, v_scale, slot, n,
                    step, table, out, chunks, key_mul, key_div, scaled):
    """Engine.attention of one layer: qkv [B, (H + 2G) D] float32 -> this step's keys and
    values into the cache (sink [B, G, S, D], kp [B, G, D/2, W, 2] and vp [B, G, W/2, D, 2]
    int8, k_scale and v_scale [B, G, W]) and the attention over slots [0, n) to
    out [B, H D] float32 (key_mul, key_div, scaled: _attention_input). One stream at a time,
    each by one thread."""
    B = qkv.shape[0]
    D = cos.shape[0]
    W = kp.shape[-2]
    R = H // G
    for c in prange(chunks):
        rot, tmp, qp, q_scale = _input_buffers(H, D)
        acc, s, idx, ks, vs, a, ap, o, scratch = _attend_buffers(R, D, W)
        start, stop = _part(c, chunks, B)
        for b in range(start, stop):
            _attention_input(qkv[b], cos, sin, H, G, sink[b], write_sink, kp[b], k_scale[b],
                             vp[b], v_scale[b], slot, qp, q_scale, rot, tmp, scratch,
                             key_mul, key_div, scaled, -1)
            ob = out[b].reshape((H, D))
            for g in range(G):
                _attend_group(qp[g * R:(g + 1) * R], q_scale[g * R:(g + 1) * R], kp[b, g],
                              k_scale[b, g], vp[b, g], v_scale[b, g], n, step, table,
                              ob[g * R:(g + 1) * R], acc, s, idx, ks, vs, a, ap, o, scratch)


@njit(**_PAR)
def attention_run(qkv, cos, sin, H, G, sink, kp, k_scale, vp, v_scale, slots, ns, step,
                  table, out, chunks, key_mul, key_div, scaled):
    """attention_layer for T consecutive steps of one layer at once: qkv [T, B, (H + 2G) D],
    cos and sin [T, D], slots and ns [T] (each step's slot and valid slots) -> out
    [T, B, H D]. Each (stream, key group) takes its steps in order, each writing its key and
    value before it attends, so every query sees the window of its own step, as T calls of
    attention_layer do; a group's T steps one after the other (no group touches another's
    part of the cache) find its keys and values in the core's cache after the first."""
    T, B = qkv.shape[0], qkv.shape[1]
    D = cos.shape[1]
    W = kp.shape[-2]
    R = H // G
    S = sink.shape[2]
    for c in prange(chunks):
        rot, tmp, qp, q_scale = _input_buffers(H, D)
        acc, s, idx, ks, vs, a, ap, o, scratch = _attend_buffers(R, D, W)
        start, stop = _part(c, chunks, B * G)
        for bg in range(start, stop):
            b, g = bg // G, bg % G
            for t in range(T):
                slot = slots[t]
                _attention_input(qkv[t, b], cos[t], sin[t], H, G, sink[b], slot < S, kp[b],
                                 k_scale[b], vp[b], v_scale[b], slot, qp, q_scale, rot, tmp,
                                 scratch, key_mul, key_div, scaled, g)
                ob = out[t, b].reshape((H, D))
                _attend_group(qp[g * R:(g + 1) * R], q_scale[g * R:(g + 1) * R], kp[b, g],
                              k_scale[b, g], vp[b, g], v_scale[b, g], ns[t], step, table,
                              ob[g * R:(g + 1) * R], acc, s, idx, ks, vs, a, ap, o, scratch)


@njit(**_PAR)
def attend_groups(qp, q_scale, kp, k_scale, vp, v_scale, n, step, table, out, chunks):
    """Engine.attend for the query pairs qp [B, G, R, D/2] with q_scale [B, G, R], keys kp
    [B, G, D/2, W, 2] and values vp [B, G, W/2, D, 2] (int8) with scales [B, G, W], over
    slots [0, n) -> out [B, G, R, D] (the self-check's entry)."""
    B, G, R, DP = qp.shape
    W = kp.shape[-2]
    for c in prange(chunks):
        acc, s, idx, ks, vs, a, ap, o, scratch = _attend_buffers(R, 2 * DP, W)
        start, stop = _part(c, chunks, B * G)
        for bg in range(start, stop):
            b, g = bg // G, bg % G
            _attend_group(qp[b, g], q_scale[b, g], kp[b, g], k_scale[b, g], vp[b, g],
                          v_scale[b, g], n, step, table, out[b, g], acc, s, idx, ks, vs, a,
                          ap, o, scratch)


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
        idx[j] = _table_index(np.rint(F64(top - row[j]) * step), last)  # exact product
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
def group_sums(p, G, sums, totals, chunks):
    """coder._Split's sums: sums [n, groups] of q = trunc(p * 2**40) + 1 over each group of
    G ids of p [n, V] (float64 in [0, 1]), totals [n] = their row sums. int64 sums of
    integers below 2**53: exact in any order."""
    n, V = p.shape
    for c in prange(chunks):
        start, stop = _part(c, chunks, n)
        for i in range(start, stop):
            pi = p[i]
            t = np.int64(0)
            for g in range(sums.shape[1]):
                s = np.int64(0)
                stop = min(V, g * G + G)
                for j in range(g * G, stop):
                    s += np.int64(pi[j] * _Q40)  # truncation
                s += stop - g * G
                sums[i, g] = F64(s)
                t += s
            totals[i] = F64(t)


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


@njit(**_PAR)
def nearest(dots, inv, inv_norm, k, cols, sims, counts, chunks):
    """Recall.predict's choice of voters: for each row r of the exact dot products dots
    [n, m] (float32 integers), the cosines ``(float64(dots[r, j]) * inv[r]) * inv_norm[j]``
    (two roundings, the reference's order) and every j whose cosine is >= the row's k-th
    largest (k <= m): counts[r] of them, their columns in cols[r] and cosines in sims[r]
    (increasing j; cols and sims [n, m]). One pass: an entry is kept while it is >= the
    running k-th largest, which only grows, then those below the final one are dropped."""
    n, m = dots.shape
    for c in prange(chunks):
        top = np.empty(k, np.float64)  # the k largest so far, ascending
        start, stop = _part(c, chunks, n)
        for r in range(start, stop):
            for i in range(k):
                top[i] = -np.inf
            cnt = 0
            ir = inv[r]
            cr, sr = cols[r], sims[r]
            for j in range(m):
                v = F64(dots[r, j]) * ir
                v = v * inv_norm[j]
                if v >= top[0]:
                    cr[cnt] = j
                    sr[cnt] = v
                    cnt += 1
                    if v > top[0]:
                        i = 1
                        while i < k and top[i] < v:
                            top[i - 1] = top[i]
                            i += 1
                        top[i - 1] = v
            kth = top[0]
            kept = 0
            for i in range(cnt):
                if sr[i] >= kth:
                    cr[kept] = cr[i]
                    sr[kept] = sr[i]
                    kept += 1
            counts[r] = kept


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
_VIEWS: dict[int, tuple[torch.Tensor, np.ndarray]] = {}  # _view's
_POOL = numba.config.NUMBA_NUM_THREADS if numba is not None else 1


def available() -> bool:
    """Whether the fused kernels may run in this process: fusedcheck.enable() (which model.load
    calls) found numba there, LLMZIP_FUSED not 0 and every kernel equal to its torch
    reference. (Called a few hundred times per step: it reads no environment variable.)"""
    return not _STATE["off"] and _STATE.get("ok") is True


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
    return max(1, min(torch.get_num_threads(), _POOL, items))


def _scratch(key: tuple, shape: tuple, dtype: torch.dtype) -> tuple[torch.Tensor, np.ndarray]:
    """A buffer of this thread for one call site (``key``), reused while its shape stays, and
    its numpy view."""
    pool = _LOCAL.__dict__.setdefault("pool", {})
    t = pool.get(key)
    if t is None or t[0].shape != shape:
        with torch.inference_mode(False):  # a normal tensor: usable in and out of that mode
            buf = torch.empty(shape, dtype=dtype)
        t = pool[key] = (buf, buf.numpy())
    return t


def _view(t: torch.Tensor) -> np.ndarray:
    """The numpy view of a CPU tensor that lives as long as the model (a weight's scale, bias or
    gain, the attention table), made once: never for a per-step or per-cache tensor (the
    table of views would keep it alive)."""
    v = _VIEWS.get(id(t))
    if v is None or v[0] is not t:
        v = _VIEWS[id(t)] = (t, t.numpy())
    return v[1]


def linear(lin, x: torch.Tensor, gain: torch.Tensor | None = None,
           eps: float = 0.0) -> torch.Tensor:
    """``lin(x)`` (engine.IntLinear) or, with ``gain``, ``Engine.normed_linear(x, lin, gain)``
    with ``rms_eps = eps``: x [B, K] float32 -> [B, N] float32."""
    b, k = x.shape
    n = lin.scale.shape[0]
    dtype = lin.products.activation_dtype()
    a, a_np = _scratch(("a", k, dtype), (2 * b, k), dtype)
    scale = np.empty(b, np.float32)
    chunks = _chunks(b)
    linear_input(x.numpy(), _NONE32 if gain is None else _view(gain), gain is not None,
                 float(eps), a_np, scale, chunks)
    p = lin.products.exact(a, lin.w, _scratch(("p", n), (2 * b, n), torch.int32)[0])
    y = np.empty((b, n), np.float32)
    bias = lin.bias
    linear_output(p.numpy(), scale, _view(lin.scale), _NONE32 if bias is None else _view(bias),
                  bias is not None, y, chunks)
    return torch.from_numpy(y)


def silu_(x: torch.Tensor) -> torch.Tensor:
    """Engine.silu of x [B, N] float32."""
    y = np.empty(tuple(x.shape), np.float32)
    silu(x.numpy(), y, _chunks(x.shape[0]))
    return torch.from_numpy(y)


_NO_KEY_SCALE = np.ones((1, 1), np.float32)  # never read (scaled is False)


def attention(engine, cache, i: int, pos: tuple, qkv: torch.Tensor) -> torch.Tensor:
    """Engine.attention: layer i's keys and values into the cache, and the attention output
    [B, H D] of qkv [B, (H + 2G) D]."""
    slot, n, cos, sin = pos
    c = engine.config
    b, H, G, D = qkv.shape[0], c.num_heads, c.num_kv_heads, c.head_dim
    out = np.empty((b, H * D), np.float32)
    scaled = cache.key_mul is not None
    key_mul, key_div = (cache.key_mul[i].numpy(), cache.key_div[i].numpy()) if scaled else (
        _NO_KEY_SCALE, _NO_KEY_SCALE)
    attention_layer(qkv.numpy(), cos.numpy(), sin.numpy(), H, G, cache.sink_keys.numpy()[i],
                    slot < cache.sinks, cache.kp.numpy()[i], cache.k_scale.numpy()[i],
                    cache.vp.numpy()[i], cache.v_scale.numpy()[i], slot, n,
                    F32(engine.score_step), _view(engine.table), out, _chunks(b), key_mul,
                    key_div, scaled)
    return torch.from_numpy(out)


def attention_steps(engine, cache, i: int, pos: list, qkv: torch.Tensor) -> torch.Tensor:
    """Engine.attention_steps: layer i over T steps (pos: each step's Engine.begin), qkv
    [T B, (H + 2G) D] (rows step-major) -> [T B, H D]."""
    T = len(pos)
    c = engine.config
    H, G, D = c.num_heads, c.num_kv_heads, c.head_dim
    b = qkv.shape[0] // T
    out = np.empty((T, b, H * D), np.float32)
    scaled = cache.key_mul is not None
    key_mul, key_div = (cache.key_mul[i].numpy(), cache.key_div[i].numpy()) if scaled else (
        _NO_KEY_SCALE, _NO_KEY_SCALE)
    slots = np.array([p[0] for p in pos], np.int64)
    ns = np.array([p[1] for p in pos], np.int64)
    cos = np.stack([p[2].numpy() for p in pos])
    sin = np.stack([p[3].numpy() for p in pos])
    attention_run(qkv.numpy().reshape(T, b, -1), cos, sin, H, G, cache.sink_keys.numpy()[i],
                  cache.kp.numpy()[i], cache.k_scale.numpy()[i], cache.vp.numpy()[i],
                  cache.v_scale.numpy()[i], slots, ns, F32(engine.score_step),
                  _view(engine.table), out, _chunks(b * G), key_mul, key_div, scaled)
    return torch.from_numpy(out.reshape(T * b, H * D))


def attend(engine, pieces: torch.Tensor, q_scale: torch.Tensor, keys_t: torch.Tensor,
           k_scale: torch.Tensor, values: torch.Tensor, v_scale: torch.Tensor) -> torch.Tensor:
    """Engine.attend (the same arguments; keys and values int8-valued, any dtype), through the
    kernel attention_layer uses, with the cache's layouts (pairdot.pair_keys, pair_values)."""
    b, G, R2, D = pieces.shape
    R, n = R2 // 2, keys_t.shape[-1]
    q = torch.add(pieces[:, :, R:], pieces[:, :, :R], alpha=256.0).to(torch.int32)  # exact
    qp = (q[..., 0::2] & 0xFFFF) | (q[..., 1::2] << 16)
    out = torch.empty((b, G, R, D), dtype=torch.float32)
    attend_groups(qp.contiguous().numpy(), q_scale[..., 0].contiguous().numpy(),
                  pair_keys(keys_t.to(torch.int8)).numpy(), _padded(k_scale),
                  pair_values(values.to(torch.int8)).numpy(), _padded(v_scale), n,
                  F32(engine.score_step), engine.table.numpy(), out.numpy(), _chunks(b * G))
    return out


def _padded(scale: torch.Tensor) -> np.ndarray:
    """Scales [.., n] -> [.., W] (pairdot.pair_keys' W), padded with ones."""
    n = scale.shape[-1]
    out = np.ones((*scale.shape[:-1], padded_window(n)), np.float32)
    out[..., :n] = scale.numpy()
    return out


def lm_frequencies(x: torch.Tensor, bias: torch.Tensor | None, table: np.ndarray,
                   scale: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """mixer.lm_frequencies(Bias.apply(x), scale) of logits x [n, V] float32 with the bias b32
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
    frequencies(x.numpy(), b, bias is not None, shared, F64(scale), table, f.numpy(),
                total.numpy()[:, 0], _chunks(n))
    return f, total


def mixture(f: torch.Tensor, k: np.ndarray) -> np.ndarray:
    """``f * k[:, None]`` (float64 [n, V], one rounding per entry) as a new array."""
    p = np.empty(tuple(f.shape), dtype=np.float64)
    scale_rows(f.numpy(), np.ascontiguousarray(k, dtype=np.float64), p, _chunks(len(p)))
    return p


def split_sums(p: np.ndarray, G: int) -> tuple[np.ndarray, np.ndarray]:
    """coder._Split's group sums [n, ceil(V / G)] and row sums [n, 1] of p [n, V] float64."""
    n, V = p.shape
    sums = np.empty((n, -(-V // G)), dtype=np.float64)
    totals = np.empty((n, 1), dtype=np.float64)
    group_sums(np.ascontiguousarray(p), G, sums, totals[:, 0], _chunks(n))
    return sums, totals


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


def voters(dots: np.ndarray, inv: np.ndarray, inv_norm: np.ndarray,
           k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Recall.predict's voters from the dot products [n, m] (float32, exact integers): rows,
    columns and cosines of every entry at least as similar as its row's k-th (k < m)."""
    n, m = dots.shape
    cols = np.empty((n, m), np.int64)
    sims = np.empty((n, m), np.float64)
    counts = np.empty(n, np.int64)
    nearest(np.ascontiguousarray(dots), np.ascontiguousarray(inv, dtype=np.float64),
            np.ascontiguousarray(inv_norm, dtype=np.float64), k, cols, sims, counts,
            _chunks(n))
    rows = np.repeat(np.arange(n), counts)
    return (rows, np.concatenate([cols[r, :c] for r, c in enumerate(counts)]),
            np.concatenate([sims[r, :c] for r, c in enumerate(counts)]))


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
