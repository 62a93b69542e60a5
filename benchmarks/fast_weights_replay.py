"""Experiment, not a component of llmzip: fast weights on the LM's final hidden state, replayed.

    python benchmarks/fast_weights_replay.py DIR NAME BYTES --streams S --prime P \\
        --model-dir DIR [--lr 3e-4] [--eps 1e-4] [--topk K [--renorm]] [--every M]

On top of the default mixer (mixing_ablation.run, recall included), the bias head's logits get
``E (A h)``: h is the final hidden state after the norm (recovered from the recorded logits as
``pinv(E) logits``; the head is the tied embedding E), A [D x D] starts at zero and steps by
AdaGrad on the code length, ``dA = E^T g h^T`` with ``g = resp (p_lm - onehot(y))`` summed
over the streams. ``--topk K`` forms ``E^T p_lm`` from the K likeliest tokens only
(``--renorm``: rescaled to sum 1), the cheap variant; ``--every M`` takes the gradient from one
stream in M per step, in rotation. Prints ideal bits per byte (baseline: --lr 0).
Results: benchmarks/MIXING.md, "After recall".
"""

from __future__ import annotations

import argparse

import numpy as np
from mixing_ablation import hidden_map, run

from llmzip import mixer
from llmzip.bias import Bias
from llmzip.codec import segment_lengths
from llmzip.mixer import MixConfig


def fast_weights_bias(e_mat: np.ndarray, pinv: np.ndarray, args: argparse.Namespace) -> type:
    """A Bias that also adds ``E A h`` and learns A (see the module docstring)."""
    d = e_mat.shape[1]

    class FastWeightsBias(Bias):
        def __init__(self, *a, **k) -> None:
            super().__init__(*a, **k)
            self.a = np.zeros((d, d), np.float32)
            self.a_g2 = np.zeros((d, d), np.float32)
            self.steps = 0

        def apply(self, x: np.ndarray) -> None:
            self.h = x @ pinv.T  # before the bias: the LM's own state
            super().apply(x)
            x += (self.h @ self.a.T) @ e_mat.T

        def update(self, e, scale, tokens, resp) -> None:
            super().update(e, scale, tokens, resp)
            self.steps += 1
            rows = np.arange(len(tokens))
            if args.every > 1:
                rows = rows[(rows + self.steps) % args.every == 0]
            r = resp[rows].astype(np.float32)
            p = e[rows] * scale[rows].astype(np.float32)[:, None]
            if args.topk:
                top = np.argpartition(-p, args.topk, axis=1)[:, : args.topk]
                pt = np.take_along_axis(p, top, 1)
                if args.renorm:
                    pt /= pt.sum(axis=1, keepdims=True)
                ge = np.einsum("nk,nkd->nd", pt * r[:, None], e_mat[top])
            else:
                ge = (p * r[:, None]) @ e_mat
            ge -= r[:, None] * e_mat[tokens[rows]]
            grad = ge.T @ self.h[rows]
            self.a_g2 += grad * grad
            self.a -= args.lr * grad / np.sqrt(args.eps + self.a_g2)

    return FastWeightsBias


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("name")
    ap.add_argument("bytes", type=int)
    ap.add_argument("--streams", type=int, required=True)
    ap.add_argument("--prime", type=int, default=128)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--eps", type=float, default=1e-4)
    ap.add_argument("--topk", type=int, default=0)
    ap.add_argument("--renorm", action="store_true")
    ap.add_argument("--every", type=int, default=1)
    args = ap.parse_args()
    from safetensors.numpy import load_file

    e_mat = load_file(f"{args.model_dir}/model.safetensors")["model.embed_tokens.weight"]
    e_mat = e_mat.astype(np.float32)
    pinv = np.linalg.pinv(e_mat.astype(np.float64)).astype(np.float32)
    if args.lr > 0:
        mixer.Bias = fast_weights_bias(e_mat, pinv, args)
    tokens = np.load(f"{args.dir}/{args.name}.tokens.npy")
    logits = np.load(f"{args.dir}/{args.name}.logits.npy", mmap_mode="r")
    lengths = segment_lengths(len(tokens), args.streams, args.prime)
    bits, _ = run(tokens, logits, lengths, args.prime, MixConfig(), hidden_map(args.model_dir))
    print(f"{args.name} lr {args.lr:g} eps {args.eps:g} topk {args.topk} renorm {args.renorm} "
          f"every {args.every}: {bits / args.bytes:.4f} bits/byte")


if __name__ == "__main__":
    main()
