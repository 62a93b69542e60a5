"""Record the LM logits that compression really computes, for tuning the mixer offline.

    python benchmarks/record_logits.py FILE NAME [--bytes N] [--streams S] [--context W]
        [--prime P] [--out DIR]

Unlike dump_logits.py (one stream, full-sequence windows), this runs the codec's own lockstep
loop: the input is tokenized and split into streams exactly as `llmzip compress` does with the
same settings (one frame: the input must fit in one), with the compressor's own Predictor
(priming included). The logits of a stream's j-th token are stored at the position of that
token in the file, so `mixing_ablation.py DIR NAME BYTES --streams S --prime P` replays
exactly the compressor's LM
predictions: its "lm" row is the LM alone at these settings, and its "all" row is the
compressed size at these settings minus the container and the coder's overhead.

Writes DIR/NAME.tokens.npy (int32 [N]) and DIR/NAME.logits.npy (float16 [N, V]).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from llmzip.numerics import numerics_for

from llmzip import codec
from llmzip.mixer import MixConfig
from llmzip.predictor import Predictor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("name")
    ap.add_argument("--bytes", type=int)
    ap.add_argument("--streams", type=int)
    ap.add_argument("--context", type=int, default=codec.DEFAULT_WINDOW)
    ap.add_argument("--prime", type=int, default=codec.DEFAULT_PRIME)
    ap.add_argument("--out", default="/tmp/llmzip_steplogits")
    args = ap.parse_args()
    data = Path(args.file).read_bytes()[: args.bytes]
    settings = codec.Settings(streams=args.streams, window=args.context, prime=args.prime)
    if len(data) > settings.frame_size:
        raise SystemExit("the input must fit in one frame")
    numerics = numerics_for(settings)
    model = numerics.load_model(None)
    ids = model.tokens.encode(data).astype(np.int64)
    lengths = codec.segment_lengths(len(ids), settings.streams, settings.prime)
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # token index of each segment
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / f"{args.name}.tokens.npy", ids.astype(np.int32))
    logits = np.lib.format.open_memmap(out / f"{args.name}.logits.npy", mode="w+",
                                       dtype=np.float16, shape=(len(ids), model.vocab_size))
    # LM alone: the mixer's softmax is the only work besides the model step.
    predictor = Predictor(model, lengths, settings.window, settings.sinks, MixConfig.lm_only(),
                          settings.prime)
    begin = time.time()
    for t in range(lengths[0]):
        lg = predictor.logits().float().cpu().numpy()
        n = lg.shape[0]
        idx = first[:n] + t - predictor.starts[:n]
        logits[idx] = lg.astype(np.float16)
        predictor.mixer.mix(lg)  # observe() updates the mixer, which needs a mix first
        predictor.observe(ids[idx])
        if t % 100 == 0:
            print(f"step {t}/{lengths[0]}, {time.time() - begin:.0f} s", flush=True)
    logits.flush()
    bits = 0.0
    for i in range(0, len(ids), 2048):
        lp = torch.log_softmax(torch.from_numpy(np.asarray(logits[i : i + 2048], np.float32)), -1)
        bits -= float(lp[torch.arange(lp.shape[0]), torch.from_numpy(ids[i : i + 2048])].sum())
    print(f"{args.name}: {len(ids)} tokens, {len(lengths)} streams, window {settings.window}, "
          f"prime {settings.prime}, "
          f"{numerics.dtype_name}: LM alone {bits / np.log(2) / len(data):.4f} bits/byte")


if __name__ == "__main__":
    main()
