"""Tune a model's mixer settings without running the model again (measuring only; never run by
llmzip itself).

    python benchmarks/mixer_replay.py cache MODEL FILE[:A:B] DIR
    python benchmarks/mixer_replay.py replay DIR [FIELD=VALUE ...] [--tokens N]

``cache`` runs the engine once over a text as a small input is coded (one stream, a 4096-token
window, the model's engine) and keeps, per token, the LM's logits and final hidden state
(DIR/logits.npy is tokens x vocabulary float32: 3 GB for 5,000 tokens of a 151,936-token
model) and the tokens. ``replay`` runs the mixer (settings.MixConfig; FIELD=VALUE overrides a
field, e.g. ``bias_lr=0.125 lm_scale=240 recall=0``) over the cached logits and prints the
ideal code length in bytes (what the coder spends, to within a few bytes), mixed and of the LM
with the bias head alone, per span of tokens. A replay takes the mixer's time only: seconds
where the model took half an hour.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from llmzip.codec.predictor import Predictor
from llmzip.codec.settings import BEST_WINDOW, DEFAULT_SINKS, Coding
from llmzip.engine.keyscale import exponents
from llmzip.format import container as fmt
from llmzip.format.layout import Layout
from llmzip.format.mixconfig import MixConfig
from llmzip.mixing.mixer import Mixer
from llmzip.model import load
from llmzip.numeric.products import configure


def read(spec: str) -> bytes:
    path, *span = spec.split(":")
    data = Path(path).read_bytes()
    return data[int(span[0]):int(span[1])] if span else data


def cache(name: str, spec: str, out: Path) -> None:
    model = load(name)
    tokens = np.asarray(model.tokens.encode(read(spec)), dtype=np.int64)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "tokens.npy", tokens)
    layout = Layout.split(len(tokens), 1, 0)
    engine = fmt.ENGINE_KEYS if exponents(model) is not None else fmt.ENGINE_EXACT
    coding = Coding(model.fingerprint, engine, BEST_WINDOW, DEFAULT_SINKS, 0, MixConfig())
    predictor = Predictor(model, layout, coding)
    logits = np.lib.format.open_memmap(out / "logits.npy", "w+", np.float32,
                                       (len(tokens), model.vocab_size))
    hidden = None
    start = time.time()
    for t, y in enumerate(tokens):
        x = predictor.logits()
        logits[t] = x[0].float().numpy()
        h = predictor.cache.hidden[0].float().numpy()
        if hidden is None:
            hidden = np.zeros((len(tokens), len(h)), np.float32)
        hidden[t] = h
        predictor.mixer.mix(x, predictor.cache.hidden)
        predictor.observe(np.array([y]))
        if t % 500 == 0:
            print(f"{t} tokens, {time.time() - start:.0f} s", flush=True)
    logits.flush()
    np.save(out / "hidden.npy", hidden)


def replay(directory: Path, overrides: list[str], most: int | None) -> None:
    fields = {f.name: f.type for f in dataclasses.fields(MixConfig)}
    values = {}
    for item in overrides:
        key, value = item.split("=")
        kind = fields[key]
        values[key] = value == "1" if kind == "bool" else (int if kind == "int" else float)(value)
    config = MixConfig(**values)
    logits = np.load(directory / "logits.npy", mmap_mode="r")
    hidden = np.load(directory / "hidden.npy")
    tokens = np.load(directory / "tokens.npy")[:most]
    mixer = Mixer(logits.shape[1], [len(tokens)], config, [0])
    bits = np.zeros((len(tokens), 2))
    for t, y in enumerate(tokens):
        p = mixer.mix(torch.from_numpy(np.array(logits[t:t + 1])),
                      torch.from_numpy(hidden[t:t + 1]))
        f, total, _ = mixer._state
        bits[t] = -np.log2(p[0, y]), -np.log2(float(f[0, y]) / float(total[0, 0]))
        mixer.update(np.array([y]))
    edges = [e for e in (0, 500, 1000, 2000, 4000) if e < len(tokens)] + [len(tokens)]
    spans = [f"{a}-{b}: {bits[a:b, 0].sum() / 8:.1f}" for a, b in zip(edges, edges[1:])]
    print(f"{' '.join(overrides) or 'defaults'}: {len(tokens)} tokens, mixed "
          f"{bits[:, 0].sum() / 8:.1f} B, LM + bias {bits[:, 1].sum() / 8:.1f} B "
          f"({', '.join(spans)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache")
    c.add_argument("model")
    c.add_argument("text")
    c.add_argument("dir", type=Path)
    r = sub.add_parser("replay")
    r.add_argument("dir", type=Path)
    r.add_argument("overrides", nargs="*")
    r.add_argument("--tokens", type=int)
    args = parser.parse_args()
    configure("cpu", 1)
    if args.command == "cache":
        cache(args.model, args.text, args.dir)
    else:
        replay(args.dir, args.overrides, args.tokens)


if __name__ == "__main__":
    main()
