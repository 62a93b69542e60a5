"""The per-step state of one frame: the LM over a batch of streams, and the mixer.

The encoder and decoder drive a :class:`Predictor` through the very same sequence of calls::

    for t in range(layout.steps):
        probs = predictor.step()      # [n(t), V] float64 for the active streams
        tokens = <code or decode one token per active stream with probs>
        predictor.observe(tokens)

The active streams are always a prefix ``[0, n(t))`` (layout.py); a stream that ends drops out
of the batch on both sides at the same step. With priming, stream 0 runs alone for ``prime``
steps, then the others join: each starts from a copy of stream 0's KV cache and reads the
model's ``join_token`` (a paragraph break) as its first input, so its first tokens are
predicted with the document's opening in context instead of from nothing. The batch shapes and
the cache copies are a function of the layout alone, which the container stores.
"""

from __future__ import annotations

import numpy as np
import torch

from llmzip import container as fmt
from llmzip.keyscale import exponents
from llmzip.layout import Layout
from llmzip.mixer import Mixer
from llmzip.model import LoadedModel
from llmzip.settings import Coding


class Predictor:
    def __init__(self, model: LoadedModel, layout: Layout, coding: Coding) -> None:
        self.model = model
        self.layout = layout
        self.t = 0
        n0 = layout.active(0)
        keys = exponents(model) if coding.engine == fmt.ENGINE_KEYS else None
        self.cache = model.llama.new_cache(n0, coding.window, coding.sinks, keys)
        self.mixer = Mixer(model.vocab_size, layout.lengths, coding.mix, layout.starts,
                           legacy=model.legacy)
        self.inputs = torch.full((n0,), model.start_token, dtype=torch.int64)

    def step(self) -> np.ndarray:
        """Probabilities [n, V] float64 of the next token of each active stream."""
        logits = self.logits()
        hidden = self.cache.hidden if self.mixer.recall is not None else None
        return self.mixer.mix(logits, hidden)

    def logits(self) -> torch.Tensor:
        """The LM's logits [n, V] for the active streams (the model step of ``step``)."""
        n = self.layout.active(self.t)
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
