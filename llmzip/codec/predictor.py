"""The per-step state of one frame: the LM over a batch of streams, and the mixer.

The encoder and decoder drive a :class:`Predictor` through the very same sequence of calls::

    for t in range(layout.steps):
        probs = predictor.step()      # [n(t), V] float64 for the active streams
        tokens = <code or decode one token per active stream with probs>
        predictor.observe(tokens)

The active streams are always a prefix ``[0, n(t))`` (format/layout.py); a stream that ends
drops out of the batch on both sides at the same step. With priming, stream 0 runs alone
for ``prime`` steps, then the others join: each starts from a copy of stream 0's KV cache and
reads the model's ``join_token`` (a paragraph break) as its first input, so its first tokens
are predicted with the document's opening in context instead of from nothing. The batch shapes
and the cache copies are a function of the layout alone, which the container stores.

The encoder knows every token in advance (``ahead``: the layout's table of them), so it runs
the model over up to :data:`AHEAD_ROWS` rows (steps x streams) at once (``Llama.steps``), which
reads each weight once for all of them; the logits are the same bits as the decoder's.

The decoder drafts instead (:class:`Drafts`): it guesses each stream's next few tokens and runs
the model over the guessed rows too. A row's logits are used only while every earlier guess
was the token that was then decoded, which makes them the very logits of one step at a time
(the same inputs, the same window, ``Llama.steps``' bits); at the first wrong guess the cache
is put back as it was before the rows after it (the ring slots they wrote, saved before the
run), and the next step runs afresh. Guesses change which rows are computed, never a number:
any drafter, always right or always wrong, gives the same file (tests/test_drafts.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from llmzip.codec.settings import Coding
from llmzip.engine.keyscale import exponents
from llmzip.engine.llama import ring_step
from llmzip.format import container as fmt
from llmzip.format.layout import Layout
from llmzip.mixing.mixer import Mixer

if TYPE_CHECKING:
    from llmzip.model.load import LoadedModel

AHEAD_ROWS = 256  # rows (steps x active streams) the encoder's model runs at once
DRAFT_MOST = 4  # tokens the decoder guesses ahead per stream, at most
DRAFT_STREAMS = 2  # drafting only while at most this many streams are active (all must agree)


class Drafts:
    """The decoder's guesses of each stream's next tokens: where the mixer's match model
    follows an earlier occurrence of the context, the tokens that followed it there; else the
    token that followed the last occurrence of the stream's last two tokens, chained. How
    many it offers follows the rate at which its guesses came true (none while it is mostly
    wrong)."""

    def __init__(self, most: int = DRAFT_MOST) -> None:
        self.most = most
        self.tables: list[dict[tuple[int, int], int]] = []
        self.last: list[tuple[int, int]] = []
        self.right = 0.5  # a running rate of first guesses that came true
        self.probe: np.ndarray | None = None  # the last first guess, scored by observe

    def observe(self, tokens: np.ndarray) -> None:
        if self.probe is not None:  # the rate: of first guesses, drafted on or not
            hit = len(self.probe) == len(tokens) and bool(np.array_equal(self.probe, tokens))
            self.right = 0.95 * self.right + 0.05 * hit
            self.probe = None
        while len(self.tables) < len(tokens):
            self.tables.append({})
            self.last.append((-1, -1))
        for i, tok in enumerate(tokens.tolist()):
            a, b = self.last[i]
            if a >= 0:
                self.tables[i][(a, b)] = tok
            self.last[i] = (b, tok)

    def guess(self, n: int, match=None) -> np.ndarray:
        """Up to ``most`` guessed tokens [k, n] for streams [0, n) (k = 0: none); ``match``:
        the mixer's match model (mixer.Match), whose followed occurrences come first."""
        k = self.most if self.right > 0.4 else 1 if self.right > 0.2 else 0
        k = min(k, self.most)
        width = max(k, 1) if self.most else 0  # one guess at least, to score
        rows: list[list[int | None]] = [[None] * n for _ in range(width)]
        for i in range(n):
            chain = self._followed(match, i, width) if match is not None else []
            state = self.last[i] if i < len(self.last) else (-1, -1)
            table = self.tables[i] if i < len(self.tables) else {}
            for j in range(width):
                x = chain[j] if j < len(chain) else table.get(state)
                if x is None:
                    break
                rows[j][i] = x
                state = (state[1], x)
        good = 0
        while good < width and all(x is not None for x in rows[good]):
            good += 1
        self.probe = np.array(rows[0], dtype=np.int64) if good else None
        good = min(good, k)
        return np.array(rows[:good], dtype=np.int64).reshape(good, n)

    @staticmethod
    def _followed(match, i: int, k: int) -> list[int]:
        """The up to k tokens after stream i's match, as far as they were observed."""
        ptr = int(match.ptr[i])
        if ptr < 0:
            return []
        stream, pos = divmod(ptr, match.steps)
        last = min(match.t, int(match.ends[stream]))
        return match.flat[ptr: ptr + max(0, min(k, last - pos))].tolist()


class Predictor:
    def __init__(self, model: LoadedModel, layout: Layout, coding: Coding,
                 ahead: np.ndarray | None = None, drafts: Drafts | None = None,
                 mixer: type[Mixer] = Mixer) -> None:
        """``ahead``: the tokens to be coded (``layout.scatter``'s table), known to the
        encoder only; None: the decoder, which learns each token once it is decoded and
        drafts (``drafts``: the guesser, :class:`Drafts` by default). ``mixer``: the class
        of the format's mixer (formats 1-2: mixing/legacy.py's, which codec/stream.py
        passes)."""
        self.model = model
        self.layout = layout
        self.t = 0
        n0 = layout.active(0)
        keys = exponents(model) if coding.engine == fmt.ENGINE_KEYS else None
        self.cache = model.llama.new_cache(n0, coding.window, coding.sinks, keys)
        self.mixer = mixer(model.vocab_size, layout.lengths, coding.mix, layout.starts)
        self.inputs = torch.full((n0,), model.start_token, dtype=torch.int64)
        self.ahead = ahead
        self._run: tuple[int, torch.Tensor, torch.Tensor] | None = None  # (first step, ...)
        self.drafts = None if ahead is not None or model.legacy else (drafts or Drafts())
        self._drafted: tuple[np.ndarray, list] | None = None  # (guesses [k, n], saved slots)

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
        if self.drafts is not None:
            return self._drafted_step(n)
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

    def _drafted_step(self, n: int) -> torch.Tensor:
        """The decoder's model step: this step's logits, and those of the drafted steps
        after it (kept in ``_run`` while the guesses come true)."""
        llama = self.model.llama
        guesses = (self.drafts.guess(n, self.mixer.match) if n <= DRAFT_STREAMS
                   else np.zeros((0, n), np.int64))
        k = len(guesses)
        while k and any(self.layout.active(self.t + j) != n for j in range(1, k + 1)):
            k -= 1
        # Never from the sinks' first slots, nor over a move of the sinks, nor around the ring
        # (the run's slots must differ: a wrong guess's slot is put back as it was).
        k = min(k, self.cache.window - self.cache.sinks - 1)
        if k > 0:
            k = llama.steady(self.cache, k + 1) - 1 if self.t >= self.cache.sinks else 0
        if k == 0:
            return llama.step(self.cache, self.inputs)  # [n, V]
        guesses = guesses[:k]
        saved = self._save_slots(k)
        rows = torch.cat([self.inputs[None], torch.from_numpy(guesses)])
        logits = llama.steps(self.cache, rows).view(k + 1, n, -1)
        hidden = self.cache.hidden.view(k + 1, n, -1)
        self._run = (self.t, logits, hidden)
        self._drafted = (guesses, saved)
        self.cache.hidden = hidden[0]
        return logits[0]

    def _save_slots(self, k: int) -> list:
        """What steps t + 1 .. t + k will overwrite in the ring: per step, its slot's keys,
        values and scales (all layers and streams), to put back if its guess was wrong."""
        c = self.cache
        offset = c.offset
        if ring_step(c.t, c.window, c.sinks, offset)[0]:
            offset += c.window  # (as the first step's begin will do)
        saved = []
        for t in range(c.t + 1, c.t + k + 1):
            slot = ring_step(t, c.window, c.sinks, offset)[1]
            saved.append((slot, c.kp[:, :, :, :, slot].clone(),
                          c.vp[:, :, :, slot // 2, :, slot % 2].clone(),
                          c.k_scale[..., slot].clone(), c.v_scale[..., slot].clone()))
        return saved

    def _undraft(self, right: int) -> None:
        """The guess after ``right`` correct ones was wrong: the cache as if the steps after
        the last correct one had never run."""
        first, logits, hidden = self._run
        saved = self._drafted[1]
        c = self.cache
        for slot, kp, vp, ks, vs in reversed(saved[right:]):
            c.kp[:, :, :, :, slot] = kp
            c.vp[:, :, :, slot // 2, :, slot % 2] = vp
            c.k_scale[..., slot] = ks
            c.v_scale[..., slot] = vs
        c.t = first + right + 1
        self._run = (first, logits[: right + 1], hidden[: right + 1])
        self._drafted = None

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
        if self._drafted is not None:
            guesses = self._drafted[0]
            j = self.t - self._run[0]
            if j < len(guesses) and not np.array_equal(tokens, guesses[j]):
                self._undraft(j)
            elif j == len(guesses) - 1:
                self._drafted = None
        elif self._run is not None and self.ahead is not None and not np.array_equal(
                tokens, self.ahead[: len(tokens), self.t]):
            raise RuntimeError("observed tokens differ from those the model ran ahead on")
        if self.drafts is not None:
            self.drafts.observe(tokens)
        self.mixer.update(tokens)
        self.inputs = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
        self.t += 1
