"""Raw-limit ratio: end-to-end compression tokens/s against the bare model step at the same
batch size, dtype and window, measured in one run.

    python benchmarks/speed.py ../shared/data/alice29.txt [--bytes N] [--streams S] [--steps K]

The bare step is `Llama.step` alone (no mixer, no coder) on the stream count that compression
picks for this input; the end-to-end figure is a full `compress` of the same bytes.
"""

from __future__ import annotations

import argparse
import io
import resource
import time
from pathlib import Path

import torch
from llmzip.numerics import numerics_for

from llmzip import codec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--bytes", type=int)
    ap.add_argument("--streams", type=int)
    ap.add_argument("--context", type=int, default=codec.DEFAULT_WINDOW)
    ap.add_argument("--steps", type=int, default=64, help="bare steps to time")
    args = ap.parse_args()
    data = Path(args.file).read_bytes()[: args.bytes]
    settings = codec.Settings(streams=args.streams, window=args.context)
    numerics = numerics_for(settings)
    model = numerics.load_model(None)
    tokens = model.tokens.encode(data)
    lengths = codec.segment_lengths(len(tokens), settings.streams, settings.prime)
    batch = len(lengths)

    cache = model.llama.new_cache(batch, settings.window, settings.sinks)
    x = torch.zeros(batch, dtype=torch.int64)
    warm = min(args.context + 8, lengths[0])  # time the steady state: a full window
    for _ in range(warm):
        model.llama.step(cache, x)
    start = time.perf_counter()
    for _ in range(args.steps):
        model.llama.step(cache, x)
    bare = batch * args.steps / (time.perf_counter() - start)

    start = time.perf_counter()
    out = io.BytesIO()
    stats = codec.compress_stream(io.BytesIO(data), out, settings)
    seconds = time.perf_counter() - start
    e2e = stats.tokens / seconds
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"file {args.file} bytes {len(data)} tokens {len(tokens)} streams {batch} "
          f"window {settings.window} dtype {numerics.dtype_name} threads {numerics.threads}")
    print(f"bare model step: {bare:.1f} tokens/s (batch {batch}, full window)")
    print(f"end to end:      {e2e:.1f} tokens/s, {len(data) / 1024 / seconds:.2f} KB/s, "
          f"{seconds:.1f} s, {8 * len(out.getvalue()) / len(data):.4f} bits/byte")
    print(f"raw-limit ratio: {e2e / bare:.3f}")
    print(f"peak RSS: {rss:.0f} MB")


if __name__ == "__main__":
    main()
