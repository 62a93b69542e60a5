"""The per-step state of one frame: the LM over a batch of streams, and the context mixer.

The encoder and decoder drive a :class:`Predictor` through the very same sequence of calls::

    for t in range(lengths[0]):
        probs = predictor.step()      # [n(t), V] float64 for the active streams
        tokens = <code or decode one token per active stream with probs>
        predictor.observe(tokens)

Stream i codes its tokens at steps ``starts[i] .. starts[i] + lengths[i] - 1``. Without
priming every stream starts at step 0. With ``prime`` = P > 0 (and more than one stream),
stream 0 runs alone for P steps (batch 1), then the others join: each starts from a copy of
stream 0's KV cache and reads the model's ``join_token`` (a paragraph break) as its first
input, so its first tokens are predicted with the document's opening in context instead of
from nothing. The ends ``starts[i] + lengths[i]`` are non-increasing, so the
active streams are always a prefix ``[0, n(t))``; a stream that ends drops out of the batch on
both sides at the same step. The batch shapes, the cache copies and so every floating-point
result are a function of ``lengths`` and ``prime`` alone, which the container stores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from llmzip.exactmixer import ExactMixer
from llmzip.mixer import ContextMixer, MixConfig
from llmzip.model import LoadedModel


def stream_starts(lengths: Sequence[int], prime: int) -> np.ndarray:
    """The step at which each stream codes its first token. ValueError unless the streams'
    ends are non-increasing (so the active streams are always a prefix)."""
    n = len(lengths)
    starts = np.zeros(n, dtype=np.int64)
    if n > 1:
        starts[1:] = prime
    ends = starts + np.asarray(lengths, dtype=np.int64)
    if n == 0 or min(lengths) < 1 or prime < 0 or np.any(ends[1:] > ends[:-1]):
        raise ValueError("stream lengths must be positive and end in order")
    return starts


class Predictor:
    def __init__(
        self,
        model: LoadedModel,
        lengths: Sequence[int],
        window: int,
        sinks: int,
        mix: MixConfig,
        prime: int = 0,
    ) -> None:
        self.model = model
        self.starts = stream_starts(lengths, prime)
        self.ends = self.starts + np.asarray(lengths, dtype=np.int64)
        self.t = 0
        n0 = self.active
        self.cache = model.llama.new_cache(n0, window, sinks)
        mixer = ExactMixer if getattr(model.llama, "portable", False) else ContextMixer
        self.mixer = mixer(model.vocab_size, list(lengths), mix, self.starts)
        self.inputs = torch.full((n0,), model.start_token, dtype=torch.int64)

    @property
    def active(self) -> int:
        """Number of streams that have a token to code at the current step."""
        return int(np.count_nonzero((self.starts <= self.t) & (self.t < self.ends)))

    def step(self) -> np.ndarray:
        """Probabilities [n, V] float64 of the next token of each active stream."""
        logits = self.logits()
        hidden = self.cache.hidden if self.mixer.recall is not None else None
        if isinstance(self.mixer, ExactMixer):
            return self.mixer.mix(logits, hidden)
        return self.mixer.mix(logits.cpu().numpy(), hidden)

    def logits(self) -> torch.Tensor:
        """The LM's logits [n, V] for the active streams (the model step of ``step``)."""
        n = self.active
        if n == 0:
            raise RuntimeError("all streams have ended")
        if n < self.cache.batch:
            self.cache.shrink(n)
            self.inputs = self.inputs[:n]
        elif n > self.cache.batch:  # streams joining: copies of stream 0's context
            joining = n - self.cache.batch
            self.cache.grow(n)
            join = torch.full((joining,), self.model.join_token, dtype=torch.int64)
            self.inputs = torch.cat([self.inputs, join])
        return self.model.llama.step(self.cache, self.inputs)  # [n, V]

    def observe(self, tokens: np.ndarray) -> None:
        """The tokens [n] that occurred for the active streams of the last step."""
        self.mixer.update(tokens)
        self.inputs = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
        self.t += 1
