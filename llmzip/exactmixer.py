"""The portable mode's probability stream: LM softmax and online bias head, machine-independent.

    p = f / sum(f),   f = max(1, round(2**36 * exp(logits + b - max)))

``f`` are exact integer frequencies (their float64 sum is exact: below 2**53 for any
vocabulary up to 2**16), so ``p`` is the same float64 array on every machine, and so is the
coder's quantisation of it. ``exp`` is exactmath's polynomial, not libm's.

The bias head is that of bias.py with the same learning rule (b -= lr * mean_i (p_i -
onehot(y_i)), clipped), but the mean over streams is a sum in stream order, one element-wise
add per stream, so no reduction order is left to a library.

Not yet portable: the n-gram and match models' mixing (mixer.py uses numpy's exp and sums).
A portable file has them off; :class:`ExactMixer` refuses a configuration with them on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from llmzip import exactmath as xm
from llmzip.bias import CLIP
from llmzip.mixer import MixConfig

FREQ_BITS = 36
F64 = torch.float64


class ExactMixer:
    """Same calling pattern as mixer.ContextMixer: ``mix`` then ``update``, once per step."""

    def __init__(self, vocab_size: int, lengths: Sequence[int], config: MixConfig) -> None:
        if config.ngram or config.match:
            raise ValueError("the portable mode has no n-gram or match model yet")
        if vocab_size >= 1 << (52 - FREQ_BITS):
            raise ValueError("vocabulary too large for exact frequency sums")
        self.config = config
        self.vocab_size = vocab_size
        self.streams = len(lengths)
        b_shape = (vocab_size,) if config.shared else (len(lengths), vocab_size)
        self.b = torch.zeros(b_shape, dtype=F64) if config.bias else None
        self._p: torch.Tensor | None = None

    def mix(self, logits: torch.Tensor) -> np.ndarray:
        """logits [n, V] float64 (any device) -> probabilities [n, V] float64, each > 0."""
        x = logits.to(device="cpu", dtype=F64)
        n = x.shape[0]
        if self.b is not None:
            x = x + (self.b if self.b.ndim == 1 else self.b[:n])
        e = xm.exp(x - x.amax(dim=1, keepdim=True))
        f = torch.round(e * float(1 << FREQ_BITS)).clamp_(min=1.0)
        p = f / f.sum(dim=1, keepdim=True)  # the sum is exact: integers below 2**53
        self._p = p
        return p.numpy()

    def update(self, tokens: np.ndarray) -> None:
        """tokens [n]: what occurred for the streams of the last mix()."""
        p, self._p = self._p, None
        assert p is not None and len(p) == len(tokens), "update() without mix()"
        if self.b is None:
            return
        y = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
        n = len(y)
        lr = self.config.bias_lr
        if self.b.ndim == 1:
            g = p[0].clone()
            for i in range(1, n):  # stream order: a fixed summation order
                g = g + p[i]
            b = self.b - g * (lr / n)
            for i in range(n):
                b[y[i]] += lr / n
            self.b = b.clamp_(-CLIP, CLIP)
        else:
            b = self.b[:n] - p * lr
            b[torch.arange(n), y] += lr
            self.b[:n] = b.clamp_(-CLIP, CLIP)
