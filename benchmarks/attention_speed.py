"""Time the fused attention kernel (fused.attention_layer) alone: one step of 30 layers of
SmolLM2's shape (9 query heads, 3 key/value heads of 64) at B streams over a full window of W
slots, on a synthetic int8 cache, and the rate at which it reads the keys and values, beside
the host's bound: a plain streaming read of as many bytes on the same threads (a sum of int64).
A decoding step reads the whole cache once, so its time cannot go below that read's.

    python benchmarks/attention_speed.py [--streams 16] [--window 2048] [--threads 2]
                                         [--repeat 9]

Prints the fastest and the median of the repeats (on a shared VM the median moves by ~10%).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from llmzip.engine import kernels
from llmzip.engine.exact import ATT_BITS, ATT_SIZE, STEP_BITS
from llmzip.numeric import exactmath as xm
from llmzip.numeric.jit import PAR, njit, part, prange
from llmzip.numeric.pairdot import padded_window
from llmzip.numeric.products import configure

H, G, D, LAYERS = 9, 3, 64, 30


@njit(**PAR)
def _read(a, chunks):
    """The sum of a (int64): every byte read once, in one contiguous chunk per thread."""
    sums = np.zeros(chunks, np.int64)
    for c in prange(chunks):
        start, stop = part(c, chunks, a.size)
        s = np.int64(0)
        for i in range(start, stop):
            s += a[i]
        sums[c] = s
    return sums.sum()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--window", type=int, default=2048)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    B, W = args.streams, args.window
    threads = configure("cpu", args.threads)
    Wp = padded_window(W)
    rng = np.random.default_rng(0)
    kp = rng.integers(-127, 128, (LAYERS, B, G, D // 2, Wp, 2), dtype=np.int8)
    vp = rng.integers(-127, 128, (LAYERS, B, G, Wp // 2, D, 2), dtype=np.int8)
    k_scale = rng.random((LAYERS, B, G, Wp), dtype=np.float32) * 0.05 + 0.005
    v_scale = rng.random((LAYERS, B, G, Wp), dtype=np.float32) * 0.05 + 0.005
    sink = np.zeros((LAYERS, B, G, 4, D), np.float32)
    qkv = rng.standard_normal((B, (H + 2 * G) * D), dtype=np.float32)
    cos, sin = np.ones(D, np.float32), np.zeros(D, np.float32)
    table = xm.exp_table(STEP_BITS, ATT_BITS, 0, ATT_SIZE).to(torch.float32).numpy()
    step = np.float32((1 << STEP_BITS) / math.sqrt(D))
    out = np.empty((B, H * D), np.float32)
    one = np.ones((1, 1), np.float32)
    chunks = max(1, min(threads, B))

    def run() -> float:
        start = time.perf_counter()
        for i in range(LAYERS):
            kernels.attention_layer(qkv, cos, sin, H, G, sink[i], False, kp[i], k_scale[i], vp[i],
                                  v_scale[i], W - 1, W, step, table, out, chunks, one, one,
                                  False)
        return time.perf_counter() - start

    run()  # compile / load from numba's cache
    times = [run() for _ in range(args.repeat)]
    gb = LAYERS * B * G * D * Wp * 2 / 1e9
    best, median = min(times), statistics.median(times)
    print(f"streams {B} window {W} threads {threads}: {best * 1e3:.1f} ms a step (median "
          f"{median * 1e3:.1f}), {best / B * 1e3:.2f} ms a stream, keys and values read at "
          f"{gb / best:.1f} GB/s, {best / (B * W) * 1e6:.2f} us a slot")
    plain = np.ones(int(gb * 1e9) // 8, np.int64)
    _read(plain, threads)
    reads = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        _read(plain, threads)
        reads.append(time.perf_counter() - start)
    print(f"bound: a streaming read of the same {gb * 1e3:.0f} MB on {threads} threads: "
          f"{min(reads) * 1e3:.1f} ms ({gb / min(reads):.1f} GB/s)")


if __name__ == "__main__":
    main()
