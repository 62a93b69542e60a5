"""The linear layer's kernels: a row of float32 activations to its 16-bit integers
``256 hi + lo`` and its scale (the exact engine's quantiser), and the exact products back to
float32 rows; :func:`linear` runs a whole layer with the chosen product (products.py),
(linear16.py: the same layer through intmm.py's one-pass product)."""

from __future__ import annotations

import numpy as np
import torch

from llmzip.numeric.jit import (
    F32,
    F64,
    JIT,
    NONE32,
    PAR,
    absmax,
    njit,
    numpy_view,
    part,
    prange,
    scratch_buffer,
    threads_for,
)

QMAX = 32639  # |q| of a 16-bit activation: 256 * hi + lo, hi in [-127, 127], lo in [-128, 127]
QMAX32 = F32(QMAX)


@njit(**JIT)
def split_pieces(x, s, hi, lo):
    """engine._pieces of one row given its scale: q = round(x / s) = 256 hi + lo."""
    for k in range(x.shape[0]):
        q = np.int32(np.rint(x[k] / s))
        h = (q + 128) >> 8  # floor((q + 128) / 256): exact integers
        hi[k] = h
        lo[k] = q - (h << 8)



@njit(**JIT)
def input_row(row, gain, use_gain, eps, hi, lo, y, scratch):
    """linear_input of one row; returns its factor."""
    K = row.shape[0]
    s = absmax(row, scratch) / QMAX32
    if not use_gain:
        split_pieces(row, s, hi, lo)
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
    s = absmax(y, scratch) / QMAX32
    split_pieces(y, s, hi, lo)
    return s * inv_rms



@njit(**PAR)
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
        start, stop = part(c, chunks, B)
        for b in range(start, stop):
            scale[b] = input_row(x[b], gain, use_gain, eps, out[b], out[B + b], y, scratch)



@njit(**PAR)
def linear_output(p, scale, w_scale, bias, use_bias, y, chunks):
    """IntLinear's epilogue: p [2B, N] (int32 exact sums, or float32 from the float32 kernel)
    -> y [B, N] = ((float(P_lo) + 256 float(P_hi)) * scale[b]) * w_scale[n] (+ bias[n])."""
    B, N = y.shape
    for c in prange(chunks):
        start, stop = part(c, chunks, B)
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



def linear(lin, x: torch.Tensor, gain: torch.Tensor | None = None,
           eps: float = 0.0) -> torch.Tensor:
    """``lin(x)`` (engine.IntLinear) or, with ``gain``, ``Engine.normed_linear(x, lin, gain)``
    with ``rms_eps = eps``: x [B, K] float32 -> [B, N] float32."""
    b, k = x.shape
    n = lin.scale.shape[0]
    dtype = lin.products.activation_dtype()
    a, a_np = scratch_buffer(("a", k, dtype), (2 * b, k), dtype)
    scale = np.empty(b, np.float32)
    chunks = threads_for(b)
    linear_input(x.numpy(), NONE32 if gain is None else numpy_view(gain), gain is not None,
                 float(eps), a_np, scale, chunks)
    p = lin.products.exact(a, lin.w, scratch_buffer(("p", n), (2 * b, n), torch.int32)[0])
    y = np.empty((b, n), np.float32)
    bias = lin.bias
    linear_output(p.numpy(), scale, numpy_view(lin.scale),
                  NONE32 if bias is None else numpy_view(bias), bias is not None, y, chunks)
    return torch.from_numpy(y)
