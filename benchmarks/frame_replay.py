"""Tune mixer settings at any level without running the model again (measuring only; never
run by llmzip itself).

    python benchmarks/frame_replay.py record FILE DIR [--level N]
    python benchmarks/frame_replay.py replay FILE DIR [--level N] [FIELD=VALUE ...]

``record`` compresses FILE (one frame: FILE must fit one) at level N with the model's own
mixer settings and keeps, step by step, what the model gave the mixer: the logits of the
active streams (DIR/logits.f32: rows x vocabulary float32, ~8 GB for alice29) and their hidden
states (DIR/hidden.f32). ``replay`` compresses FILE again through the real codec, layout and
coder, with the model's steps read back from DIR and the mixer settings changed by
FIELD=VALUE (settings.MixConfig's fields, e.g. ``lm_scale=244 bias_lr=0.375``), and prints
the file's size: the bytes ``llmzip compress`` would write with those settings, in the
mixer's time alone. Replaying the recorded settings gives the recorded file's size exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

import llmzip
from llmzip.codec import predictor as pred
from llmzip.codec.settings import DEFAULT_LEVEL
from llmzip.format.mixconfig import MixConfig
from llmzip.numeric.products import configure


def _mix(overrides: list[str]) -> dict:
    kinds = {f.name: f.type for f in dataclasses.fields(MixConfig)}
    values = {}
    for item in overrides:
        key, value = item.split("=")
        kind = kinds[key]
        values[key] = (value == "1" if kind == "bool" else
                       int(value) if kind == "int" else float(value))
    return values


def record(data: bytes, out: Path, level: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    original = pred.Predictor.logits
    with open(out / "logits.f32", "wb") as fl, open(out / "hidden.f32", "wb") as fh:

        def logits(self: pred.Predictor) -> torch.Tensor:
            x = original(self)
            fl.write(x.float().numpy().tobytes())
            fh.write(self.cache.hidden.float().numpy().tobytes())
            rows.append(x.shape[0])
            return x

        pred.Predictor.logits = logits
        start = time.time()
        blob = llmzip.compress(data, level=level)
    (out / "meta.json").write_text(json.dumps({
        "rows": rows, "bytes": len(blob), "level": level, "seconds": time.time() - start}))
    print(f"recorded {len(rows)} steps, {sum(rows)} rows; level {level}: {len(blob)} B")


def replay(data: bytes, directory: Path, level: int, overrides: list[str]) -> None:
    meta = json.loads((directory / "meta.json").read_text())
    rows = meta["rows"]
    hidden_dim = (directory / "hidden.f32").stat().st_size // 4 // sum(rows)
    vocab = (directory / "logits.f32").stat().st_size // 4 // sum(rows)
    logits_all = np.memmap(directory / "logits.f32", np.float32, "r", shape=(sum(rows), vocab))
    hidden_all = np.fromfile(directory / "hidden.f32", np.float32).reshape(-1, hidden_dim)
    at = np.concatenate([[0], np.cumsum(rows)])

    class Cache:
        hidden = None

    def logits(self: pred.Predictor) -> torch.Tensor:
        n = self.layout.active(self.t)
        a, b = at[self.t], at[self.t + 1]
        if b - a != n:
            raise SystemExit(f"step {self.t}: {n} streams, recorded {b - a}: another layout")
        self.cache.hidden = torch.from_numpy(hidden_all[a:b])
        return torch.from_numpy(np.array(logits_all[a:b]))

    def new_cache(*args, **kwargs):
        return Cache()

    pred.Predictor.logits = logits
    from llmzip.model import load

    model = load(None)
    model.llama.new_cache = new_cache  # (load() keeps one model per process: the codec's)
    mix = dataclasses.replace(model.mix, **_mix(overrides))
    start = time.time()
    blob = llmzip.compress(data, level=level, mix=mix)
    bits = 8 * len(blob) / len(data)
    print(f"{' '.join(overrides) or 'recorded settings'}: {len(blob)} B, {bits:.4f} bits/byte "
          f"(recorded {meta['bytes']} B), {time.time() - start:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("record", "replay"))
    parser.add_argument("file", type=Path)
    parser.add_argument("dir", type=Path)
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--level", type=int, default=DEFAULT_LEVEL)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_intermixed_args()
    configure("cpu", args.threads)
    data = args.file.read_bytes()
    if args.command == "record":
        record(data, args.dir, args.level)
    else:
        replay(data, args.dir, args.level, args.overrides)


if __name__ == "__main__":
    main()
