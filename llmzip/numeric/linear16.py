"""The linear layer through intmm.py's one-pass product: the 16-bit integers ``256 hi + lo``
of linear.py's quantiser as one row per activation row (where linear.py's kernels multiply
the two pieces), the same bits as :func:`linear.linear`."""

from __future__ import annotations

import numpy as np
import torch

from llmzip.numeric import intmm
from llmzip.numeric.intmm import F32_EXACT, PIECE_MAX, W_MAX
from llmzip.numeric.jit import NONE32, PAR, njit, numpy_view, prange, scratch_buffer, threads_for
from llmzip.numeric.linear import input_row


@njit(**PAR)
def int16_input(x, gain, use_gain, eps, check, q, scale, ok, chunks):
        """The 16-bit integers of linear_input (the same q = 256 hi + lo, the same row
        factor) as pairs q [B, P] int32, and ok[b]: whether row b's value is f32(P) (always,
        unless ``check``: then 127 * sum |hi| <= 2**24 and 127 * sum |lo| <= 2**24)."""
        B, K = x.shape
        qs = q.view(np.int16)
        for c in prange(chunks):
            y = np.empty(K, np.float32)
            hi = np.empty(K, np.int32)
            lo = np.empty(K, np.int32)
            scratch = np.empty(1, np.int32)
            start, stop = c * B // chunks, (c + 1) * B // chunks
            for b in range(start, stop):
                scale[b] = input_row(x[b], gain, use_gain, eps, hi, lo, y, scratch)
                sh = np.int64(0)
                sl = np.int64(0)
                for k in range(K):
                    qs[b, k] = (hi[k] << 8) + lo[k]
                    sh += abs(hi[k])
                    sl += abs(lo[k])
                for k in range(K, qs.shape[1]):
                    qs[b, k] = 0
                ok[b] = not check or (W_MAX * sh <= F32_EXACT and W_MAX * sl <= F32_EXACT)


def linear(lin, x: torch.Tensor, gain: torch.Tensor | None = None,
           eps: float = 0.0) -> torch.Tensor:
    """linear.linear (the same arguments and bits) through intmm.py's kernel: one row of 16-bit
    integers per activation row; the rows that fail the bound from their two pieces, as the
    format defines them."""
    b, k = x.shape
    wb, n = lin.w.w, lin.w.n
    _, q_np = scratch_buffer(("q16", k), (b, wb.shape[1]), torch.int32)
    scale = np.empty(b, np.float32)
    ok = np.empty(b, np.bool_)
    check = k * PIECE_MAX * W_MAX > F32_EXACT
    int16_input(x.numpy(), NONE32 if gain is None else numpy_view(gain),
                 gain is not None, float(eps), check, q_np, scale, ok, threads_for(b))
    y = np.empty((b, n), np.float32)
    bias = lin.bias
    w_scale = numpy_view(lin.scale)
    b32 = None if bias is None else numpy_view(bias)
    intmm.linear_rows(q_np, wb, scale, w_scale, b32, y, threads_for(wb.shape[0]))
    if ok.all():
        return torch.from_numpy(y)
    for r in np.flatnonzero(~ok):  # f32(P_lo) + 256 f32(P_hi), then the row's factors
        v = q_np[r].view(np.int16)[:k].astype(np.int32)
        hi = (v + 128) >> 8
        p = intmm.product(np.stack([hi, v - (hi << 8)]).astype(np.int16), wb, n,
                    threads_for(wb.shape[0])).astype(np.float32)
        row = p[1] + np.float32(256.0) * p[0]
        row = row * scale[r]
        row = row * w_scale
        y[r] = row if bias is None else row + b32
    return torch.from_numpy(y)
