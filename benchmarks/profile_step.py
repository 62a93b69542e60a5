"""Where a step's time goes: one compression and one decompression of a text, per component
(linear layers, LM head, attention, the other model ops, mixer parts, coder, the rest), with
the linear products' rate beside their bounds (GMAC/s achieved, GB/s of weights read).

    python benchmarks/profile_step.py ../shared/data/alice29.txt [--bytes 10000]
        [--kernel int8|int16|float32] [--threads N] [-- compress flags]

Each component is timed by wrapping its functions (perf_counter around each call, nested calls
counted once, in the outermost); "the rest" is the run's time less the components' (Python
glue, the layout, torch's small ops). Run it alone on a quiet machine; the kernel choice is the
machine's (kernels.choose, for each direction's row counts, as the command line chooses)
unless --kernel forces one (LLMZIP_KERNEL). Both directions run in this process, compress
first, each with the model loaded afresh; numba compiles before timing (a warm-up run on 500
bytes).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--bytes", type=int, default=10000)
    ap.add_argument("--kernel")
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    if args.kernel:
        os.environ["LLMZIP_KERNEL"] = args.kernel
    import llmzip
    from llmzip import model
    from llmzip.codec import rangecoder
    from llmzip.engine import exact, kernels
    from llmzip.mixing import mixer

    loading = importlib.import_module("llmzip.model.load")  # the module (not model.load)

    data = Path(args.file).read_bytes()[: args.bytes]
    llmzip.decompress(llmzip.compress(data[:500], threads=args.threads), threads=args.threads)
    loaded = model.load(None)
    llama = loaded.llama
    head = llama.head[1]
    vocab = head.scale.shape[0]

    def nbytes(lin) -> int:
        w = lin.w.w if hasattr(lin.w, "w") else lin.w  # (kernels.Blocked, or a tensor)
        return w.nbytes

    weights = sum(nbytes(lin) for layer in llama.layers for lin in layer if hasattr(lin, "w"))
    head_bytes = nbytes(head)

    spent: dict[str, float] = defaultdict(float)
    macs: dict[str, float] = defaultdict(float)
    depth = [0]

    def timed(name, fn, count=None):
        def wrapper(*a, **k):
            if depth[0]:
                return fn(*a, **k)
            depth[0] += 1
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name if count is None else count(a)] += time.perf_counter() - start
                depth[0] -= 1
        return wrapper

    def linear_name(a):
        lin, x = a[0], a[1]
        name = "LM head" if lin.scale.shape[0] == vocab else "linear layers"
        macs[name] += x.shape[0] * lin.scale.shape[0] * x.shape[1]
        return name

    patches = [
        (exact, "fused_linear", timed(None, exact.fused_linear, linear_name)),
        (kernels, "attention", timed("attention", kernels.attention)),
        (kernels, "attention_steps", timed("attention", kernels.attention_steps)),
        (kernels, "silu_", timed("silu", kernels.silu_)),
        (mixer.Mixer, "mix", timed("mixer (mix)", mixer.Mixer.mix)),
        (mixer.Mixer, "update", timed("mixer (update)", mixer.Mixer.update)),
        (rangecoder.Encoder, "encode", timed("coder", rangecoder.Encoder.encode)),
        (rangecoder.Decoder, "decode", timed("coder", rangecoder.Decoder.decode)),
    ]
    for owner, name, wrapper in patches:
        setattr(owner, name, wrapper)
    print(f"{len(data)} bytes; linear weights {weights / 1e6:.0f} MB, head "
          f"{head_bytes / 1e6:.0f} MB (read per model pass)")
    print("| direction | component | seconds | share | rate |")
    print("| --- | --- | ---: | ---: | --- |")
    kinds = {}
    for direction in ("compress", "decompress"):
        # Each direction loads the model afresh, so that its product kernel is the one the
        # command line picks for it (chosen at a process's first load, for its row counts).
        loading._LOADED.clear()
        spent.clear()
        macs.clear()
        start = time.perf_counter()
        if direction == "compress":
            blob = llmzip.compress(data, threads=args.threads)
        else:
            assert llmzip.decompress(blob, threads=args.threads) == data
        total = time.perf_counter() - start
        kinds[direction] = next(iter(loading._LOADED.values())).llama.engine.products.name
        rest = total - sum(spent.values())
        for name, seconds in [*sorted(spent.items(), key=lambda kv: -kv[1]), ("the rest", rest)]:
            rate = ""
            if name in macs and seconds:
                rate = f"{macs[name] / seconds / 1e9:.1f} GMAC/s"
            print(f"| {direction} | {name} | {seconds:.2f} | {seconds / total:.0%} | {rate} |")
        print(f"| {direction} | total | {total:.2f} | 100% | {len(data) / 1024 / total:.2f} KB/s |")
    print("kernels: " + ", ".join(f"{d} {k}" for d, k in kinds.items()))


if __name__ == "__main__":
    main()
