"""What priming is worth: the LM's code length for the first tokens of the streams that join.

    python benchmarks/prime_join.py FILE [--bytes N] [--streams S] [--steps K]
        [--variants cold,join128,seam128,eot128,join256]

The file is tokenized and cut into S segments as `llmzip compress` does with priming 256 (the
same cut for every variant, so every variant codes the same tokens). Streams 1..S-1 then run
K lockstep steps, LM alone, window 512, the compressor's dtype:

- ``cold``: every stream starts from nothing (the start token), as without priming;
- ``joinP``: the cache after stream 0's first P tokens (batch 1) is copied to every stream,
  which reads the model's join token (a paragraph break) and then its own tokens: what
  llmzip does;
- ``seamP``: the same, but reading stream 0's next input instead of the join token, as if
  the segment continued the opening;
- ``eotP``: the same with the start token (the document separator) as the join.

Prints the ideal code length (sum of -log2 p) of those K x (S - 1) tokens, in bytes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from llmzip.numerics import numerics_for

from llmzip import codec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("--bytes", type=int)
    ap.add_argument("--streams", type=int, default=40)
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--variants", default="cold,join128,seam128,eot128,join256")
    args = ap.parse_args()
    data = Path(args.file).read_bytes()[: args.bytes]
    settings = codec.Settings()
    numerics = numerics_for(settings)
    model = numerics.load_model(None)
    llama = model.llama
    ids = model.tokens.encode(data).astype(np.int64)
    S, K, W = args.streams, args.steps, settings.window
    lengths = codec.segment_lengths(len(ids), S, 256)
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    if min(lengths[1:]) < K:
        raise SystemExit("segments shorter than --steps")
    print(f"{args.file}: {len(ids)} tokens, streams {S}, window {W}, {numerics.dtype_name}, "
          f"{K} steps of streams 1..{S - 1}")
    for name in args.variants.split(","):
        begin = time.perf_counter()
        kind = name.rstrip("0123456789")
        prime = int(name[len(kind):] or 0)
        if kind == "cold":
            cache = llama.new_cache(S - 1, W, settings.sinks)
            inputs = torch.full((S - 1,), model.start_token, dtype=torch.int64)
        else:
            cache = llama.new_cache(1, W, settings.sinks)
            x = torch.tensor([model.start_token])
            for t in range(prime):
                llama.step(cache, x)
                x = torch.tensor([ids[t]])
            cache.grow(S)
            cache.shrink(S - 1)  # the copies only: stream 0 is not measured
            join = {"join": model.join_token, "seam": int(ids[prime - 1]),
                    "eot": model.start_token}[kind]
            inputs = torch.full((S - 1,), join, dtype=torch.int64)
        bits = np.zeros(K)
        for t in range(K):
            logp = torch.log_softmax(llama.step(cache, inputs).float(), -1)
            y = torch.from_numpy(ids[first[1:] + t])
            bits[t] = -float(logp[torch.arange(S - 1), y].sum()) / np.log(2)
            inputs = y
        print(f"{name}: {bits.sum() / 8:.0f} bytes (first {K // 2} steps "
              f"{bits[: K // 2].sum() / 8:.0f}, next {K - K // 2} {bits[K // 2 :].sum() / 8:.0f}); "
              f"{time.perf_counter() - begin:.0f} s", flush=True)


if __name__ == "__main__":
    main()
