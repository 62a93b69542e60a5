"""Time one step of the exact engine (format 3): the LM step and the mixer (mix + update), at B
streams and a full window of W tokens, with the fused CPU kernels (llmzip/fused.py) or the
torch reference.

    python benchmarks/engine_speed.py [--streams 40] [--window 512] [--steps 10] [--repeat 3]
                                      [--threads N] [--torch] [--profile]

The KV cache is filled with random int8-valued keys and values (their values do not change the
work a step does), so the figures come without a W-step warm-up. Prints the median over the
repeats of the mean per step, in ms, and how many cores other processes kept busy during each
repeat (timings on a shared machine mean little when that is not near 0). ``--torch`` sets
LLMZIP_FUSED=0 (the torch reference); ``--profile`` prints a torch.profiler table of a few LM
steps instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _jiffies() -> tuple[int, int] | None:
    """(CPU time used by every process, by this one), in clock ticks (Linux; else None)."""
    try:
        with open("/proc/stat") as f:
            cpu = [int(v) for v in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            mine = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(cpu) - cpu[3] - cpu[4], int(mine[11]) + int(mine[12])


def _others(start, end, seconds: float) -> float:
    """Cores that other processes kept busy between two _jiffies() readings."""
    if start is None or end is None:
        return float("nan")
    tick = os.sysconf("SC_CLK_TCK")
    return max(0.0, ((end[0] - start[0]) - (end[1] - start[1])) / tick / seconds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=40)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--steps", type=int, default=10, help="steps per repeat")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, help="CPU threads (default: llmzip's choice)")
    ap.add_argument("--torch", action="store_true", help="the torch reference (LLMZIP_FUSED=0)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--model", help="model (default: the installed default model)")
    args = ap.parse_args()
    if args.torch:
        os.environ["LLMZIP_FUSED"] = "0"

    import numpy as np
    import torch

    from llmzip import model as models
    from llmzip.codec import selfcheck
    from llmzip.format.mixconfig import MixConfig
    from llmzip.mixing.mixer import Mixer
    from llmzip.numeric.products import configure

    threads = configure("cpu", args.threads)
    start = time.perf_counter()
    ready = selfcheck.enable()
    setup = time.perf_counter() - start
    m = models.load(args.model)
    llama = m.llama
    B, W = args.streams, args.window
    cache = llama.new_cache(B, W, 4)
    gen = torch.Generator().manual_seed(0)
    for t in (cache.kp, cache.vp):
        t.copy_(torch.randint(-127, 128, t.shape, generator=gen).to(t.dtype))
    for t in (cache.k_scale, cache.v_scale):
        t.copy_(torch.rand(t.shape, generator=gen) * 0.05 + 0.005)
    cache.t = W + 1  # a full window; the sinks move only at t = 2W
    x = torch.randint(0, 1000, (B,), generator=gen)
    mixer = Mixer(m.vocab_size, [1 << 20] * B, MixConfig())
    rng = np.random.default_rng(0)
    print(f"streams {B} window {W} threads {threads} kernel {llama.engine.products.name} "
          f"fused {ready} (start-up check {setup:.2f} s)")
    for _ in range(2):  # warm up: first calls allocate
        logits = llama.step(cache, x)
        mixer.mix(logits, cache.hidden)
        mixer.update(rng.integers(0, 1000, B))
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                llama.step(cache, x)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
        return
    lm, mix, busy = [], [], []
    for _ in range(args.repeat):
        a = b = 0.0
        j0, began = _jiffies(), time.perf_counter()
        for _ in range(args.steps):
            t0 = time.perf_counter()
            logits = llama.step(cache, x)
            t1 = time.perf_counter()
            mixer.mix(logits, cache.hidden)
            mixer.update(rng.integers(0, 1000, B))
            t2 = time.perf_counter()
            a += t1 - t0
            b += t2 - t1
        busy.append(_others(j0, _jiffies(), time.perf_counter() - began))
        lm.append(a / args.steps * 1e3)
        mix.append(b / args.steps * 1e3)
    print(f"LM step {statistics.median(lm):.1f} ms  mixer {statistics.median(mix):.1f} ms  "
          f"total {statistics.median(x + y for x, y in zip(lm, mix)):.1f} ms  "
          f"(runs: LM {' '.join(f'{v:.1f}' for v in lm)}; "
          f"mixer {' '.join(f'{v:.1f}' for v in mix)}; "
          f"cores busy with other processes {' '.join(f'{v:.2f}' for v in busy)})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
