"""Record the LM's logits of a text, for tuning the mixer offline (measuring only, never coding).

    python benchmarks/dump_logits.py FILE NAME [--bytes N] [--out DIR] [--window W]

Writes DIR/NAME.tokens.npy (int32 [N]) and DIR/NAME.logits.npy (float16 [N, V], logits[i]
predicts tokens[i]) with a W-token sliding window (default 1024, stride W/2), single stream, using
transformers' full-sequence forward pass, and prints the LM-alone bits per byte.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from llmzip import model as models
from llmzip.model import convert


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("name")
    ap.add_argument("--bytes", type=int)
    ap.add_argument("--out", default="/tmp/llmzip_logits")
    ap.add_argument("--window", type=int, default=1024, help="tokens of context [1024]")
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM

    loaded = models.load()
    directory = convert.converted_dir(models.resolve(None))
    lm = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    data = Path(args.file).read_bytes()[: args.bytes]
    ids = loaded.tokens.encode(data).astype(np.int32)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / f"{args.name}.tokens.npy", ids)
    n, vocab = len(ids), loaded.vocab_size
    logits = np.lib.format.open_memmap(out_dir / f"{args.name}.logits.npy", mode="w+",
                                       dtype=np.float16, shape=(n, vocab))
    seq = np.concatenate([[loaded.start_token], ids]).astype(np.int64)
    done, start = 0, time.time()
    while done < n:
        lo = max(0, done - args.window // 2)
        hi = min(lo + args.window, n)
        with torch.no_grad():
            lg = lm(torch.from_numpy(seq[lo:hi])[None]).logits[0].float()
        logits[done:hi] = lg[done - lo :].numpy().astype(np.float16)
        done = hi
        print(f"{done}/{n} tokens, {time.time() - start:.0f} s", flush=True)
    logits.flush()
    bits = 0.0
    for i in range(0, n, 2048):
        lp = torch.log_softmax(torch.from_numpy(np.asarray(logits[i : i + 2048], np.float32)), -1)
        bits -= lp[torch.arange(lp.shape[0]), torch.from_numpy(ids[i : i + 2048]).long()].sum()
    print(f"{args.name}: LM alone {float(bits) / np.log(2) / len(data):.4f} bits/byte")


if __name__ == "__main__":
    main()
