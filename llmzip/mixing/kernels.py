"""The mixer's fused kernels (numba): logits to integer frequencies, their mixture, the bias
head's step and the recall's choice of voters, the same bits as the torch code of mixer.py,
bias.py and recall.py (numeric/jit.py: the rules)."""

from __future__ import annotations

import numpy as np
import torch

from llmzip.numeric.jit import (
    F32,
    F64,
    JIT,
    NONE2D,
    NONE64,
    PAR,
    largest,
    njit,
    part,
    prange,
    table_index,
    threads_for,
)


@njit(**JIT)
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
    top = largest(row, scratch)
    for j in range(V):
        idx[j] = table_index(np.rint(F64(top - row[j]) * step), last)  # exact product
    for j in range(V):
        f[j] = table[idx[j]]
    t = np.int64(0)
    for j in range(V):
        t += np.int64(f[j])  # exact: integers below 2**53
    return F64(t)



@njit(**PAR)
def frequencies(x, bias, use_bias, shared, step, table, f, total, chunks):
    """mixer.lm_frequencies of ``x + bias`` (Bias.apply, float32) for logits x [n, V]
    float32: f [n, V] float64 integers and their exact row sums total [n]. bias [V'] rows:
    one shared row (shared) or one per stream."""
    n, V = x.shape
    for c in prange(chunks):
        start, stop = part(c, chunks, n)  # this chunk's rows, and its buffers
        row, idx = np.empty(V, np.float32), np.empty(V, np.uint32)
        scratch = np.empty(1, np.int32)
        for i in range(start, stop):
            total[i] = _frequency_row(x[i], bias[0 if shared else i], use_bias, step, table,
                                      f[i], row, idx, scratch)



@njit(**PAR)
def scale_rows(f, k, p, chunks):
    """p [n, V] = f * k[:, None] (float64, one rounding each)."""
    n, V = f.shape
    for c in prange(chunks):
        start, stop = part(c, chunks, n)
        for i in range(start, stop):
            ki, fi, pi = k[i], f[i], p[i]
            for j in range(V):
                pi[j] = fi[j] * ki



@njit(**PAR)
def bias_step(f, c, y, ry, lr, adaptive, b, g2, b_out, g2_out, b32, chunks):
    """Bias.update for a shared bias (format 3): the gradient in units of 2**-40,
    g = sum_i round(f[i] * c[i]) - sum over i of ry[i] at y[i] (exact integers), times 2**-40,
    then the AdaGrad step (or SGD) and the clip, into b_out, g2_out, b32 (= float32(b))."""
    n, V = f.shape
    g = np.zeros(V, np.float64)
    for c_ in prange(chunks):
        start, stop = part(c_, chunks, V)
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



@njit(**PAR)
def nearest(dots, inv, inv_norm, k, cols, sims, counts, chunks):
    """Recall.predict's choice of voters: for each row r of the exact dot products dots
    [n, m] (integers, int64 or float32), the cosines
    ``(float64(dots[r, j]) * inv[r]) * inv_norm[j]`` (two roundings, the reference's order)
    and every j whose cosine is >= the row's k-th
    largest (k <= m): counts[r] of them, their columns in cols[r] and cosines in sims[r]
    (increasing j; cols and sims [n, m]). One pass: an entry is kept while it is >= the
    running k-th largest, which only grows, then those below the final one are dropped."""
    n, m = dots.shape
    for c in prange(chunks):
        top = np.empty(k, np.float64)  # the k largest so far, ascending
        start, stop = part(c, chunks, n)
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



def lm_frequencies(x: torch.Tensor, bias: torch.Tensor | None, table: np.ndarray,
                   scale: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """mixer.lm_frequencies(Bias.apply(x), scale) of logits x [n, V] float32 with the bias b32
    ([V] shared or [streams, V]; None: no bias) and the frequency table (float64) ->
    (f [n, V] float64, their row sums [n, 1] float64)."""
    n, V = x.shape
    f = torch.empty((n, V), dtype=torch.float64)
    total = torch.empty((n, 1), dtype=torch.float64)
    if bias is None:
        b, shared = NONE2D, True
    elif bias.ndim == 1:
        b, shared = bias.numpy()[None], True
    else:
        b, shared = bias.numpy(), False
    frequencies(x.numpy(), b, bias is not None, shared, F64(scale), table, f.numpy(),
                total.numpy()[:, 0], threads_for(n))
    return f, total



def mixture(f: torch.Tensor, k: np.ndarray) -> np.ndarray:
    """``f * k[:, None]`` (float64 [n, V], one rounding per entry) as a new array."""
    p = np.empty(tuple(f.shape), dtype=np.float64)
    scale_rows(f.numpy(), np.ascontiguousarray(k, dtype=np.float64), p, threads_for(len(p)))
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
              bias.b.numpy(), bias.g2.numpy() if adaptive else NONE64, b_out.numpy(),
              g2_out.numpy() if adaptive else NONE64, b32.numpy(),
              threads_for(bias.b.shape[0] // 4096 + 1))
    bias.b, bias.b32 = b_out, b32
    if adaptive:
        bias.g2 = g2_out



def voters(dots: np.ndarray, inv: np.ndarray, inv_norm: np.ndarray,
           k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Recall.predict's voters from the dot products [n, m] (exact integers: int64 or
    float32): rows, columns and cosines of every entry at least as similar as its row's k-th
    (k < m)."""
    n, m = dots.shape
    cols = np.empty((n, m), np.int64)
    sims = np.empty((n, m), np.float64)
    counts = np.empty(n, np.int64)
    nearest(np.ascontiguousarray(dots), np.ascontiguousarray(inv, dtype=np.float64),
            np.ascontiguousarray(inv_norm, dtype=np.float64), k, cols, sims, counts,
            threads_for(n))
    rows = np.repeat(np.arange(n), counts)
    return (rows, np.concatenate([cols[r, :c] for r, c in enumerate(counts)]),
            np.concatenate([sims[r, :c] for r, c in enumerate(counts)]))
