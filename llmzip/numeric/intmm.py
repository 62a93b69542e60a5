"""Exact products of 16-bit activations and int8 weights in one pass (numba, any CPU).

``product(q, w)`` is the exact integer ``q @ w.T`` for int16 rows ``q`` (|q| <= 32767) and int8
weights (|w| <= 127) held in :func:`block` form. It runs on :func:`pairdot.rows4`, x86's
``pmaddwd`` (AVX2: 256 bits, AVX-512: 512 bits, which LLVM turns into VNNI's ``vpdpwssd``), or
plain vector code on other targets (ARM included): every path gives the same integers.

Exactness: a pair sum is at most 2 * 32767 * 127 in magnitude, so an int32 lane holds the sum
of :data:`BLOCK` = 256 pairs (2 * 32767 * 127 * 256 = 2,130,640,896 < 2**31); blocks are added
in int64. No sum can overflow, whatever the values in that range (tests/test_intmm.py: the
extremes). The same kernel takes int16 "weights" where both sides are small: recall's keys
and queries, |w|, |q| <= 128 (a block sums at most 2 * 128 * 128 * 256 = 2**23).

The engine's linear layer (linear.linear16) feeds it the 16-bit integers ``q = 256 hi + lo``
themselves, one row per activation row, where the ``int8`` and ``float32`` kernels of
products.py multiply the two pieces (two rows). The format's value is
``f32(P_lo) + 256 f32(P_hi)`` (P: the pieces' exact products, each rounded once to float32,
then one rounded addition); that is ``f32(P)`` of the whole ``P = 256 P_hi + P_lo`` whenever
``|P_hi|, |P_lo| <= 2**24`` (both conversions exact, then one rounding), which holds for every
row when the inner dimension is at most 2**24 / (128 * 127) (kernels.F32_CHUNK), and for a
longer one when ``127 * sum |hi|`` and ``127 * sum |lo|`` are at most 2**24 (checked per row).
Rows that fail the check (rare: they need most of a row near its largest value) are computed
from the pieces.
"""

from __future__ import annotations

import numpy as np

from llmzip.numeric.pairdot import ROWS, rows1, rows4

try:
    from numba import njit, prange
except ImportError:  # intmm is then no candidate (kernels.candidates)
    njit = None
    prange = range

COLS = 16  # weight columns per tile: pmaddwd's int32 lanes in rows4
BLOCK = 256  # pairs summed in int32 before an int64 addition
F32_EXACT = 1 << 24  # integers up to this magnitude are exact in float32
W_MAX = 127
PIECE_MAX = 128  # |lo| of a piece (|hi| <= 127)

available = njit is not None and rows4 is not None


def block(w8: np.ndarray) -> np.ndarray:
    """int8 (or int16) weights [N, K] -> [ceil(N / 16), ceil(K / 2), 32] of that type: tile t
    holds columns 16 t .. 16 t + 15, pair p the inner positions 2p and 2p + 1, as
    (w[n, 2p], w[n, 2p + 1]) for n in the tile side by side (zeros pad N and K)."""
    n, k = w8.shape
    tiles, pairs = -(-n // COLS), -(-k // 2)
    full = np.zeros((tiles * COLS, pairs * 2), w8.dtype if w8.dtype == np.int16 else np.int8)
    full[:n, :k] = w8
    out = full.reshape(tiles, COLS, pairs, 2).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(out).reshape(tiles, pairs, 2 * COLS)


def pairs_of(q: np.ndarray) -> np.ndarray:
    """int16-valued rows [M, K] -> the int32 pairs [M, ceil(K / 2)] rows4 reads (2p in the low
    half, 2p + 1 in the high half; a zero pads an odd K)."""
    m, k = q.shape
    full = np.zeros((m, 2 * -(-k // 2)), np.int16)
    full[:, :k] = q
    return full.view(np.int32)


if available:
    _JIT = {"cache": True, "nogil": True, "error_model": "numpy", "boundscheck": False}

    @njit(**_JIT)
    def _tile(qf, P, m0, rows, wf, t, acc, total):
        """total[:rows * 16] = the exact products of rows m0 .. m0 + rows - 1 with tile t."""
        for r in range(rows * COLS):
            total[r] = 0
        for b0 in range(0, P, BLOCK):
            cnt = min(BLOCK, P - b0)
            if rows == ROWS:
                rows4(acc, wf, (t * P + b0) * 2 * COLS, qf, m0 * P + b0, P, cnt)
            else:
                rows1(acc, wf, (t * P + b0) * 2 * COLS, qf, m0 * P + b0, P, cnt)
            for r in range(rows * COLS):
                total[r] += acc[r]

    @njit(**{**_JIT, "parallel": True})
    def products(q, wb, raw, out, scale, w_scale, bias, use_bias, y, chunks):
        """The exact products P of the pairs q [M, P] with the blocked weights wb [T, P, 32]:
        with ``raw``, out [M, n] int64 = P (first n columns; y unused); else y [M, N] float32
        = ((f32(P) * scale[m]) * w_scale[n]) (+ bias[n]), P rounded once (the module
        docstring: the format's value for the rows that pass the bound; out unused)."""
        M, P = q.shape
        T = wb.shape[0]
        N = out.shape[1] if raw else y.shape[1]
        qf = q.ravel()
        wf = wb.ravel()
        for c in prange(chunks):
            acc = np.empty(ROWS * COLS, np.int32)
            total = np.empty(ROWS * COLS, np.int64)
            t0, t1 = c * T // chunks, (c + 1) * T // chunks
            for t in range(t0, t1):
                m0 = 0
                while m0 < M:
                    rows = ROWS if M - m0 >= ROWS else 1
                    _tile(qf, P, m0, rows, wf, t, acc, total)
                    for r in range(rows):
                        for j in range(COLS):
                            col = t * COLS + j
                            if col >= N:
                                continue
                            if raw:
                                out[m0 + r, col] = total[r * COLS + j]
                                continue
                            v = np.float32(total[r * COLS + j])
                            v = v * scale[m0 + r]
                            v = v * w_scale[col]
                            if use_bias:
                                v = v + bias[col]
                            y[m0 + r, col] = v
                    m0 += rows



_NO_F32 = np.zeros(1, np.float32)  # (the arguments products does not read)
_NO_Y = np.zeros((1, 1), np.float32)
_NO_OUT = np.zeros((1, 1), np.int64)


def product(q: np.ndarray, wb: np.ndarray, n: int, chunks: int = 1) -> np.ndarray:
    """The exact products [M, n] int64 of int16-valued rows q [M, K] and blocked weights."""
    out = np.empty((q.shape[0], n), np.int64)
    products(pairs_of(q), wb, True, out, _NO_F32, _NO_F32, _NO_F32, False, _NO_Y, chunks)
    return out


def linear_rows(q: np.ndarray, wb: np.ndarray, scale: np.ndarray, w_scale: np.ndarray,
                bias: np.ndarray | None, y: np.ndarray, chunks: int = 1) -> None:
    """y [M, N] float32 = ((f32(P) * scale[m]) * w_scale[n]) (+ bias[n]) of the pairs q
    [M, P] (:func:`pairs_of`' form) and the blocked weights: the format's value for the rows
    that pass the bound (the module docstring)."""
    products(q, wb, False, _NO_OUT, scale, w_scale, _NO_F32 if bias is None else bias,
             bias is not None, y, chunks)
