"""Ablation of the context mixer on recorded LM logits (no LM run, no coder: ideal code length).

    python benchmarks/mixing_ablation.py DIR NAME BYTES [--streams S] [--prime P] [--limit N]
        [--configs lm,ngram,match,bias,recall,all,unshared] [--set field=value ...]

DIR/NAME.tokens.npy (int32 [N]) and DIR/NAME.logits.npy (float16 [N, V], logits[i] predicts
tokens[i]) are made by benchmarks/dump_logits.py (single-stream sliding window: measures the
mixer, not the cost of splitting) or benchmarks/record_logits.py (the compressor's own
lockstep streams: give it the same --streams and --prime). The token sequence is split into S
contiguous segments stepped in lockstep as the codec does (stream 0 alone for the first P
steps, then all; n drops as short streams finish). Prints a
markdown table: bits per byte (sum of -log2 p(token) over the bytes) and the mixer's time per
step (mix + update, logits already in memory as float32).

Configs with recall need the LM's final hidden states, which the recordings do not hold: they
are recovered from the logits by least squares (the output head is the tied embedding matrix
E, of full column rank: h = pinv(E) logits), with the final norm's gain divided out (llama.py
gives the mixer the residual stream before that norm; cosine ignores the norm's scale). Pass
the converted model directory with --model-dir.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from llmzip.codec import segment_lengths
from llmzip.mixer import ContextMixer, MixConfig
from llmzip.predictor import stream_starts


def hidden_map(model_dir: str) -> np.ndarray:
    """[V, D] float32 M such that logits @ M ~= the residual stream before the final norm,
    up to a per-row scale."""
    from safetensors.numpy import load_file

    w = load_file(f"{model_dir}/model.safetensors")
    e = w["model.embed_tokens.weight"].astype(np.float64)  # [V, D]
    gain = w["model.norm.weight"].astype(np.float64)
    return (np.linalg.pinv(e).T / gain[None, :]).astype(np.float32)


def run(tokens: np.ndarray, logits: np.ndarray, lengths: list[int], prime: int,
        config: MixConfig, to_hidden: np.ndarray | None = None) -> tuple[float, float]:
    """Total code length in bits and mean mixer seconds per step (to_hidden: hidden_map)."""
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # token index of each segment
    starts = stream_starts(lengths, prime)  # step of each stream's first token
    ends = starts + np.asarray(lengths)
    mixer = ContextMixer(logits.shape[1], lengths, config, starts)
    bits = 0.0
    spent = 0.0
    for t in range(lengths[0]):
        n = int(np.count_nonzero((starts <= t) & (t < ends)))
        idx = first[:n] + t - starts[:n]
        lg = np.asarray(logits[idx], dtype=np.float32)
        y = tokens[idx].astype(np.int64)
        hidden = lg @ to_hidden if config.recall else None
        t0 = time.perf_counter()
        p = mixer.mix(lg, hidden)
        py = p[np.arange(n), y]
        mixer.update(y)
        spent += time.perf_counter() - t0
        bits -= np.log2(py).sum()
    return bits, spent / lengths[0]


def configs(base: MixConfig) -> dict[str, MixConfig]:
    off = dataclasses.replace(base, ngram=False, match=False, bias=False, recall=False)
    return {
        "lm": off,
        "ngram": dataclasses.replace(off, ngram=True),
        "match": dataclasses.replace(off, match=True),
        "bias": dataclasses.replace(off, bias=True),
        "recall": dataclasses.replace(off, recall=True),
        "all-recall": dataclasses.replace(base, recall=False),
        "ngram+match": dataclasses.replace(base, bias=False),
        "all": base,
        "unshared": dataclasses.replace(base, shared=False),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("name")
    ap.add_argument("bytes", type=int, help="size of the original text")
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--prime", type=int, default=0, help="as llmzip's --prime [0]")
    ap.add_argument("--limit", type=int, help="only the first N tokens")
    ap.add_argument("--configs", default="lm,ngram,match,bias,all,unshared")
    ap.add_argument("--model-dir", help="converted model directory (configs with recall)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a MixConfig field of every config")
    args = ap.parse_args()
    tokens = np.load(f"{args.dir}/{args.name}.tokens.npy")
    logits = np.load(f"{args.dir}/{args.name}.logits.npy", mmap_mode="r")
    nbytes = args.bytes
    if args.limit is not None:
        nbytes = args.bytes * args.limit // len(tokens)
        tokens = tokens[: args.limit]
    base = MixConfig()
    for item in args.set:
        field, value = item.split("=")
        kind = type(getattr(base, field))
        base = dataclasses.replace(base, **{field: kind(eval(value)) if kind is bool
                                            else kind(value)})
    table = configs(base)
    lengths = segment_lengths(len(tokens), args.streams, args.prime)
    print(f"{args.name}: {len(tokens)} tokens, {nbytes} bytes, {len(lengths)} streams, "
          f"prime {args.prime}, {base}")
    print("| config | bits/byte | vs LM | mixer ms/step |")
    print("| --- | --- | --- | --- |")
    lm_bits = None
    to_hidden = hidden_map(args.model_dir) if args.model_dir else None
    for name in args.configs.split(","):
        bits, per_step = run(tokens, logits, lengths, args.prime, table[name], to_hidden)
        if name == "lm":
            lm_bits = bits
        rel = f"{100 * (bits / lm_bits - 1):+.1f}%" if lm_bits else "-"
        print(f"| {name} | {bits / nbytes:.4f} | {rel} | {1000 * per_step:.2f} |", flush=True)


if __name__ == "__main__":
    main()
