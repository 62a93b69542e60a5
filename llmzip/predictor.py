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

The encoder knows every token in advance (``ahead``: the layout's table of them), so it runs
the model over up to :data:`AHEAD_ROWS` rows (steps x streams) at once (``Llama.steps``), which
reads each weight once for all of them; the logits are the same bits as the decoder's, which
must step one token at a time.
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

AHEAD_ROWS = 256  # rows (steps x active streams) the encoder's model runs at once


class Predictor:
    def __init__(self, model: LoadedModel, layout: Layout, coding: Coding,
                 ahead: np.ndarray | None = None) -> None:
        """``ahead``: the tokens to be coded (``layout.scatter``'s table), known to the
        encoder only; None steps the model one token at a time, as the decoder must."""
        self.model = model
        self.layout = layout
        self.t = 0
        n0 = layout.active(0)
        keys = exponents(model) if coding.engine == fmt.ENGINE_KEYS else None
        self.cache = model.llama.new_cache(n0, coding.window, coding.sinks, keys)
        self.mixer = Mixer(model.vocab_size, layout.lengths, coding.mix, layout.starts,
                           legacy=model.legacy)
        self.inputs = torch.full((n0,), model.start_token, dtype=torch.int64)
        self.ahead = ahead
        self._run: tuple[int, torch.Tensor, torch.Tensor] | None = None  # (first step, ...)

    def step(self) -> np.ndarray:
        """Probabilities [n, V] float64 of the next token of each active stream."""
        logits = self.logits()
        hidden = self.cache.hidden if self.mixer.recall is not None else None
        return self.mixer.mix(logits, hidden)

    def logits(self) -> torch.Tensor:
        """The LM's logits [n, V] for the active streams (the model step of ``step``); sets
        ``cache.hidden`` [n, C] to this step's hidden states."""
        n = self.layout.active(self.t)
        if n == 0:
            raise RuntimeError("all streams have ended")
        if self._run is not None:
            first, logits, hidden = self._run
            k = self.t - first
            if k < len(logits):
                self.cache.hidden = hidden[k]
                return logits[k]
            self._run = None
        if n < self.cache.batch:
            self.cache.shrink(n)
            self.inputs = self.inputs[:n]
        elif n > self.cache.batch:  # streams joining: copies of stream 0's context
            joining = n - self.cache.batch
            self.cache.grow(n)
            join = torch.full((joining,), self.model.join_token, dtype=torch.int64)
            self.inputs = torch.cat([self.inputs, join])
        llama = self.model.llama
        steps = self._steps_ahead(n)
        if steps == 1:
            return llama.step(self.cache, self.inputs)  # [n, V]
        t = self.t
        later = torch.from_numpy(np.ascontiguousarray(self.ahead[:n, t : t + steps - 1].T))
        logits = llama.steps(self.cache, torch.cat([self.inputs[None], later]))
        logits = logits.view(steps, n, -1)
        hidden = self.cache.hidden.view(steps, n, -1)
        self._run = (t, logits, hidden)
        self.cache.hidden = hidden[0]
        return logits[0]

    def _steps_ahead(self, n: int) -> int:
        """How many steps from this one the encoder runs at once: while the same n streams
        are active, the sinks stay put (Llama.steady), within AHEAD_ROWS rows."""
        if self.ahead is None or self.model.legacy:
            return 1
        most = min(max(1, AHEAD_ROWS // n), self.layout.steps - self.t)
        k = 1
        while k < most and self.layout.active(self.t + k) == n:
            k += 1
        return self.model.llama.steady(self.cache, k)

    def observe(self, tokens: np.ndarray) -> None:
        """The tokens [n] that occurred for the active streams of the last step."""
        if self._run is not None and not np.array_equal(
                tokens, self.ahead[: len(tokens), self.t]):
            raise RuntimeError("observed tokens differ from those the model ran ahead on")
        self.mixer.update(tokens)
        self.inputs = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
        self.t += 1
