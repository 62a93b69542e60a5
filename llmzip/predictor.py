"""The per-step state of one frame: the LM over a batch of streams, and the context mixer.

The encoder and decoder drive a :class:`Predictor` through the very same sequence of calls::

    for t in range(lengths[0]):
        probs = predictor.step()      # [n(t), V] float64 for the active streams
        tokens = <code or decode one token per active stream with probs>
        predictor.observe(tokens)

Streams are ordered by non-increasing length, so the active streams at step t are the prefix
``n(t) = #{i: lengths[i] > t}``; a stream that ends drops out of the batch on both sides at the
same step. The batch shapes, and so every floating-point result, are a function of ``lengths``
alone, which the container stores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from llmzip.exactmixer import ExactMixer
from llmzip.mixer import ContextMixer, MixConfig
from llmzip.model import LoadedModel


class Predictor:
    def __init__(
        self,
        model: LoadedModel,
        lengths: Sequence[int],
        window: int,
        sinks: int,
        mix: MixConfig,
    ) -> None:
        if not lengths or any(a < b for a, b in zip(lengths, lengths[1:])) or lengths[-1] < 1:
            raise ValueError("stream lengths must be positive and non-increasing")
        self.model = model
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.cache = model.llama.new_cache(len(lengths), window, sinks)
        mixer = ExactMixer if getattr(model.llama, "portable", False) else ContextMixer
        self.mixer = mixer(model.vocab_size, list(lengths), mix)
        self.inputs = torch.full((len(lengths),), model.start_token, dtype=torch.int64)
        self.t = 0

    @property
    def active(self) -> int:
        """Number of streams that still have a token to code at the current step."""
        return int(np.count_nonzero(self.lengths > self.t))

    def step(self) -> np.ndarray:
        """Probabilities [n, V] float64 of the next token of each active stream."""
        n = self.active
        if n == 0:
            raise RuntimeError("all streams have ended")
        if n < self.cache.batch:
            self.cache.shrink(n)
            self.inputs = self.inputs[:n]
        logits = self.model.llama.step(self.cache, self.inputs)  # [n, V]
        if isinstance(self.mixer, ExactMixer):
            return self.mixer.mix(logits)
        return self.mixer.mix(logits.cpu().numpy())

    def observe(self, tokens: np.ndarray) -> None:
        """The tokens [n] that occurred for the active streams of the last step."""
        self.mixer.update(tokens)
        self.inputs = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
        self.t += 1
