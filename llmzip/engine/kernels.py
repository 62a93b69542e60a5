"""The exact engine's fused kernels (numba): SiLU and the attention of a layer (the step's keys
and values into the int8 cache, the exact scores, the table softmax, the value product), the
same bits as the torch code of engine/exact.py (numeric/jit.py: the rules)."""

from __future__ import annotations

import numpy as np
import torch

from llmzip.numeric.jit import (
    F32,
    F64,
    JIT,
    PAR,
    absmax,
    largest,
    njit,
    numpy_view,
    part,
    prange,
    table_index,
    threads_for,
)
from llmzip.numeric.linear import QMAX32
from llmzip.numeric.pairdot import (
    WIDE,
    madd4,
    padded_window,
    pair_keys,
    pair_values,
    prefetch,
    scores1x1,
    scores1x4,
    scores2x1,
    scores2x4,
    scores3x1,
    scores3x4,
    scores4x1,
    scores4x4,
    wsum64,
)

KV_MAX = 127  # |an int8 key or value| in the cache
KV_MAX32 = F32(KV_MAX)
AHEAD = 256  # slots between the block attention reads and the block it asks the caches for


@njit(**JIT)
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



@njit(**PAR)
def silu(x, y, chunks):
    """engine.silu, ``x / (exactmath.exp32(-x) + 1)``, of x [B, N] float32 (any strides)
    into y [B, N]: exp32's clamp, range reduction and polynomial, operation for operation."""
    B, N = x.shape
    for c in prange(chunks):
        poly = np.empty(N, np.float32)
        bits = np.empty(N, np.int32)
        row = np.empty(N, np.float32)
        start, stop = part(c, chunks, B)
        for b in range(start, stop):
            for j in range(N):
                row[j] = x[b, j]
            _silu_row(row, y[b], poly, bits, bits.view(np.float32))



@njit(**JIT)
def _quantize_kv(x, s, out):
    """round(x / s) of a key or value vector (|x / s| <= 127: exact in int8)."""
    for d in range(x.shape[0]):
        out[d] = np.int8(np.rint(x[d] / s))



@njit(**JIT)
def _pair(lo, hi):
    """Two int16 values as the int32 pair pairdot.madd4 reads (lo in the low half)."""
    return np.int32((np.int64(lo) & 0xFFFF) | (np.int64(hi) << 16))



@njit(**JIT)
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
        s = absmax(rot, scratch) / QMAX32
        for d in range(half):
            qp[h, d] = _pair(np.int32(np.rint(rot[2 * d] / s)),
                             np.int32(np.rint(rot[2 * d + 1] / s)))
        q_scale[h] = s
    else:
        g = h - H
        if write_sink:
            for d in range(D):
                sink[g, slot, d] = x[o + d]
        s = absmax(rot, scratch) / KV_MAX32
        _quantize_kv(rot, s, tmp)
        for d in range(D):
            kp[g, d >> 1, slot, d & 1] = tmp[d]
        k_scale[g, slot] = s



@njit(**JIT)
def _value_input(x, H, G, g, D, vp, v_scale, slot, tmp, scratch):
    """_attention_input of value head g."""
    o = (H + G + g) * D
    s = absmax(x[o:o + D], scratch) / KV_MAX32
    _quantize_kv(x[o:o + D], s, tmp)
    for d in range(D):
        vp[g, slot >> 1, d, slot & 1] = tmp[d]
    v_scale[g, slot] = s



@njit(**JIT)
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



def _score_rows_of(one, two, three, four):
    """A kernel calling the score intrinsic of one slot width for 1..4 rows (the row count
    known only at run time; the intrinsics' shapes are fixed at compile time)."""

    @njit(**JIT)
    def call(acc, ao, W, kp, jb, qp, qo, DP, rows):
        ko, ks = 2 * jb, 2 * W
        if rows == 4:
            four(acc, ao, W, kp, ko, ks, qp, qo, DP, DP)
        elif rows == 3:
            three(acc, ao, W, kp, ko, ks, qp, qo, DP, DP)
        elif rows == 2:
            two(acc, ao, W, kp, ko, ks, qp, qo, DP, DP)
        else:
            one(acc, ao, W, kp, ko, ks, qp, qo, DP, DP)

    return call


# Scores of ``rows`` query rows from row qo // DP, slots jb .. jb + 16 (_narrow) or + 64 (_wide)
_narrow = _score_rows_of(scores1x1, scores2x1, scores3x1, scores4x1)
_wide = _score_rows_of(scores1x4, scores2x4, scores3x4, scores4x4)



@njit(**JIT)
def _scores(qp, kp, vp, nb, acc):
    """acc[r, j] = the exact integer scores sum q k of the query pairs qp [R, D/2] (rows
    contiguous) with the keys kp [D/2, W, 2], slots j < nb (a multiple of 16, <= W): 64 slots
    (one cache line per pair) and up to four rows per pass over the keys, then 16 at a time.
    Integer sums, so the order of rows and slots changes no value. On the way, hints bring
    the keys and the values vp [W/2, D, 2] ahead into the caches."""
    R, DP = qp.shape
    W = kp.shape[1]
    D = 2 * DP
    jb = 0
    while jb < nb:
        wide = nb - jb >= 16 * WIDE
        span = 16 * WIDE if wide else 16
        for at in range((jb + 31) // 32 * 32, min(jb + span, nb - AHEAD), 32):  # (hints:
            for dp in range(DP):  # the cache is cold; every 32 slots, as far ahead)
                prefetch(kp, 2 * (dp * W + at + AHEAD))
            for line in range(0, 32 * D, 64):
                prefetch(vp, (at + AHEAD) * D + line)
        for r in range(0, R, 4):
            rows = min(4, R - r)
            if wide:
                _wide(acc, r * W + jb, W, kp, jb, qp, r * DP, DP, rows)
            else:
                _narrow(acc, r * W + jb, W, kp, jb, qp, r * DP, DP, rows)
        jb += span



@njit(**JIT)
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
    last = F32(table.shape[0] - 1)
    for j in range(n):
        ks[j] = k_scale[j]
        vs[j] = v_scale[j]
    vmax = F64(largest(vs[:n], scratch))
    _scores(qp, kp, vp, (n + 15) // 16 * 16, acc)
    M = (n + 7) // 8 * 4  # pairs of slots, in blocks of four (<= W / 2)
    D64 = D - D % 64
    D16 = D - D % 16
    for r in range(R):
        ar = acc[r]
        for j in range(n):
            s[j] = F32(ar[j]) * ks[j]
        top = largest(s[:n], scratch)
        c0 = q_scale[r] * step
        for j in range(n):  # (separate loops: each one vectorises)
            idx[j] = table_index(np.rint((top - s[j]) * c0), last)
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



@njit(**JIT)
def _input_buffers(H, D):
    """_attention_input's per-thread buffers: rot, tmp, qp, q_scale."""
    return (np.empty(D, np.float32), np.empty(D, np.int8), np.empty((H, D // 2), np.int32),
            np.empty(H, np.float32))



@njit(**JIT)
def _attend_buffers(R, D, W):
    return (np.empty((R, W), np.int32), np.empty(W, np.float32), np.empty(W, np.uint32),
            np.empty(W, np.float32), np.empty(W, np.float32), np.empty(W, np.int32),
            np.empty(W // 2, np.int32), np.empty(D, np.int32), np.empty(1, np.int32))



@njit(**PAR)
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
        start, stop = part(c, chunks, B)
        for b in range(start, stop):
            _attention_input(qkv[b], cos, sin, H, G, sink[b], write_sink, kp[b], k_scale[b],
                             vp[b], v_scale[b], slot, qp, q_scale, rot, tmp, scratch,
                             key_mul, key_div, scaled, -1)
            ob = out[b].reshape((H, D))
            for g in range(G):
                _attend_group(qp[g * R:(g + 1) * R], q_scale[g * R:(g + 1) * R], kp[b, g],
                              k_scale[b, g], vp[b, g], v_scale[b, g], n, step, table,
                              ob[g * R:(g + 1) * R], acc, s, idx, ks, vs, a, ap, o, scratch)



@njit(**PAR)
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
        start, stop = part(c, chunks, B * G)
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



@njit(**PAR)
def attend_groups(qp, q_scale, kp, k_scale, vp, v_scale, n, step, table, out, chunks):
    """Engine.attend for the query pairs qp [B, G, R, D/2] with q_scale [B, G, R], keys kp
    [B, G, D/2, W, 2] and values vp [B, G, W/2, D, 2] (int8) with scales [B, G, W], over
    slots [0, n) -> out [B, G, R, D] (the self-check's entry)."""
    B, G, R, DP = qp.shape
    W = kp.shape[-2]
    for c in prange(chunks):
        acc, s, idx, ks, vs, a, ap, o, scratch = _attend_buffers(R, 2 * DP, W)
        start, stop = part(c, chunks, B * G)
        for bg in range(start, stop):
            b, g = bg // G, bg % G
            _attend_group(qp[b, g], q_scale[b, g], kp[b, g], k_scale[b, g], vp[b, g],
                          v_scale[b, g], n, step, table, out[b, g], acc, s, idx, ks, vs, a,
                          ap, o, scratch)



def silu_(x: torch.Tensor) -> torch.Tensor:
    """Engine.silu of x [B, N] float32."""
    y = np.empty(tuple(x.shape), np.float32)
    silu(x.numpy(), y, threads_for(x.shape[0]))
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
                    F32(engine.score_step), numpy_view(engine.table), out, threads_for(b), key_mul,
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
                  numpy_view(engine.table), out, threads_for(b * G), key_mul, key_div, scaled)
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
                  F32(engine.score_step), engine.table.numpy(), out.numpy(), threads_for(b * G))
    return out



def _padded(scale: torch.Tensor) -> np.ndarray:
    """Scales [.., n] -> [.., W] (pairdot.pair_keys' W), padded with ones."""
    n = scale.shape[-1]
    out = np.ones((*scale.shape[:-1], padded_window(n)), np.float32)
    out[..., :n] = scale.numpy()
    return out
