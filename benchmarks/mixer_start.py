"""Learn the mixer's warm start (mixer.py ``_START``) and measure what it is worth (measuring
and tuning only; never run by llmzip itself).

    python benchmarks/mixer_start.py train FILE[:A:B] ... [--model NAME]
    python benchmarks/mixer_start.py test FILE[:A:B] ... [--model NAME] [--start flat|table|NPY]

``train`` runs the default mixer from the flat start over each text in turn (one stream, a
4096-token window, the exact engine: what a small input gets), carrying the gating weights W
from one text to the next, and prints the table rounded to 1/64 as mixer.py writes it (rows:
n-gram orders 1..4, recall, match). ``test`` prints each text's ideal code length (bits, as the
coder would spend them up to its rounding) from the flat start, from the committed table, or
from a saved W. Texts are ``PATH`` or ``PATH:A:B`` (bytes A..B).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from llmzip.codec.predictor import Predictor
from llmzip.codec.settings import BEST_WINDOW, DEFAULT_SINKS, Coding
from llmzip.engine.keyscale import exponents
from llmzip.format import container as fmt
from llmzip.format.layout import Layout
from llmzip.format.mixconfig import MixConfig
from llmzip.mixing import mixer
from llmzip.model import load
from llmzip.numeric.products import configure


def read(spec: str) -> bytes:
    path, *span = spec.split(":")
    data = Path(path).read_bytes()
    return data[int(span[0]):int(span[1])] if span else data


def run(model, data: bytes, start: np.ndarray | None) -> tuple[float, np.ndarray]:
    """Bits of ``data`` under the default mixer (one stream) whose W starts at ``start`` (None:
    flat), and the W it ends with."""
    tokens = model.tokens.encode(data)
    layout = Layout.split(len(tokens), 1, 0)
    engine = fmt.ENGINE_KEYS if exponents(model) is not None else fmt.ENGINE_EXACT
    coding = Coding(model.fingerprint, engine, BEST_WINDOW, DEFAULT_SINKS, 0,
                    MixConfig(warm=False))
    predictor = Predictor(model, layout, coding)
    if start is not None:
        predictor.mixer.W[:] = start
    table = layout.scatter(tokens)
    bits = 0.0
    for t in range(layout.steps):
        p = predictor.step()
        y = table[: p.shape[0], t]
        bits -= float(np.log2(p[np.arange(len(y)), y]).sum())
        predictor.observe(y)
    return bits, predictor.mixer.W.copy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["train", "test"])
    ap.add_argument("texts", nargs="+")
    ap.add_argument("--model")
    ap.add_argument("--start", default="flat", help="flat, table or a .npy W [flat]")
    ap.add_argument("--save", help="train: also save W here (.npy)")
    args = ap.parse_args()
    configure("cpu", 1)
    model = load(args.model)
    rows = MixConfig().ngram_order + 2  # the default components
    if args.mode == "test":
        start = {"flat": None, "table": mixer.start_table(MixConfig())}.get(args.start)
        if args.start not in ("flat", "table"):
            start = np.load(args.start)
        for spec in args.texts:
            t0 = time.time()
            bits, _ = run(model, read(spec), start)
            print(f"{spec} start={args.start}: {bits / 8:.1f} bytes ({time.time() - t0:.0f} s)",
                  flush=True)
        return
    W = None
    for spec in args.texts:
        bits, W = run(model, read(spec), W)
        print(f"{spec}: {bits / 8:.1f} bytes", flush=True)
    assert W is not None and W.shape[0] == rows
    if args.save:
        np.save(args.save, W)
    q = np.round(W * 64).astype(int)
    print("_START = np.array([")
    for row in q:
        print("    [" + ", ".join(str(v) for v in row) + "],")
    print("]) / 64.0")


if __name__ == "__main__":
    main()
