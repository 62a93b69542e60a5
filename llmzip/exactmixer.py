"""The portable mode's probability stream: the mixer of mixer.py, computed the same everywhere.

    p_lm = f / sum(f),   f = max(1, round(2**36 * exp(logits + b - max)))
    p    = w_0 * p_lm + sum_j w_j * q_j           (the linear mixture of mixer.py)

``f`` are exact integer frequencies (their float64 sum is exact: below 2**53 for any
vocabulary up to 2**16), so ``p_lm`` is the same float64 array on every machine. The n-gram
and match statistics are integers (ngram.py, match.py) and the gating features the same as
mixer.py's (:func:`mixer.candidates`). Everything else is element-wise float64 arithmetic,
``exp`` is exactmath's polynomial (never libm's or numpy's SIMD one), and every sum is either
of integers or written out term by term in a fixed order (over components, n-gram slots,
streams), so no reduction order is left to a library. numpy's ``add.at`` adds in index order.

The learning rules are mixer.py's and bias.py's: SGD of the gating table on the code length,
and the bias step on ``g = sum_i r_i (p_lm_i - onehot(y_i))`` (divided by n for files
without ``bias_sum``) with LM responsibilities ``r_i``: AdaGrad
``b -= lr * g / sqrt(ADA_EPS + G)`` (``bias_adaptive``), else ``b -= lr * g``. The geometric
mixture (log1p, einsum) has no portable form: refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from llmzip import exactmath as xm
from llmzip import mixer as mx
from llmzip.bias import ADA_EPS, CLIP, shared_step
from llmzip.match import Match
from llmzip.mixer import MixConfig
from llmzip.ngram import SLOTS, NGram
from llmzip.recall import Recall

FREQ_BITS = 36
F64 = torch.float64


def _exp(x: np.ndarray) -> np.ndarray:
    return xm.exp(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))).numpy()


def _sum_columns(a: np.ndarray) -> np.ndarray:
    """a[:, 0] + a[:, 1] + ... in that order."""
    total = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        total = total + a[:, j]
    return total


class ExactMixer:
    """Same calling pattern as mixer.ContextMixer: ``mix`` then ``update``, once per step."""

    def __init__(self, vocab_size: int, lengths: Sequence[int], config: MixConfig,
                 starts: Sequence[int] | None = None) -> None:
        if config.geometric:
            raise ValueError("the portable mode has no geometric mixture")
        if vocab_size >= 1 << (52 - FREQ_BITS):
            raise ValueError("vocabulary too large for exact frequency sums")
        c = config
        self.config = config
        self.vocab_size = vocab_size
        n = len(lengths)
        self.ngram = NGram(n, c.ngram_order, c.table_bits, c.shared) if c.ngram else None
        self.match = (Match(lengths, c.match_min, c.table_bits, c.shared, starts)
                      if c.match else None)
        self.recall = Recall(c.recall_bits, c.recall_theta) if c.recall else None
        self.k = (c.ngram_order if c.ngram else 0) + c.recall
        self.n_comp = self.k + bool(c.match)
        self.W = np.zeros((self.n_comp, mx._TABLE))
        self.W[:, :mx._OWN] = mx._INIT
        b_shape = (vocab_size,) if c.shared else (n, vocab_size)
        self.b = torch.zeros(b_shape, dtype=F64) if c.bias else None
        self.g2 = (torch.zeros(b_shape, dtype=F64) if c.bias and c.bias_adaptive
                   else None)  # AdaGrad's sum of squared gradients
        self._state: tuple | None = None

    def mix(self, logits: torch.Tensor, hidden=None) -> np.ndarray:
        """logits [n, V] float64 (any device) -> probabilities [n, V] float64, each > 0.
        ``hidden`` [n, D]: the LM's final hidden states (needed with recall; recall.py is
        exact on every machine already)."""
        recalled = mx.need_hidden(self.recall, hidden)
        x = logits.to(device="cpu", dtype=F64)
        n = x.shape[0]
        if self.b is not None:
            x = x + (self.b if self.b.ndim == 1 else self.b[:n])
        e = xm.exp(x - x.amax(dim=1, keepdim=True))
        f = torch.round(e * float(1 << FREQ_BITS)).clamp_(min=1.0)
        p_lm = (f / f.sum(dim=1, keepdim=True)).numpy()  # exact sum: integers below 2**53
        if self.n_comp == 0:
            self._state = (p_lm, None)
            return p_lm
        rows = np.arange(n)
        J = self.n_comp
        present, top, own, tok, q, mtok = mx.candidates(self, n, recalled)
        p_top = p_lm[rows[:, None], top]
        lm_b = mx._bucket(mx._PMAX_EDGES, p_lm.max(axis=1))
        idx = np.stack([own, np.broadcast_to(mx._LM_AT + lm_b[:, None], own.shape),
                        mx._CAND_AT + mx._bucket(mx._PCAND_EDGES, p_top)], axis=2)  # [n, J, 3]
        comp = np.arange(J)[None, :]
        z = self.W[comp, idx[..., 0]] + self.W[comp, idx[..., 1]]
        z = z + self.W[comp, idx[..., 2]]
        zmax = np.maximum(np.where(present, z, -np.inf).max(axis=1), 0.0)
        w = np.where(present, _exp(z - zmax[:, None]), 0.0)
        w0 = _exp(-zmax)
        norm = w0 + _sum_columns(w)
        w = w / norm[:, None]
        w0 = w0 / norm
        p = p_lm * w0[:, None]
        mx.add_candidates(p, w, present, self.k, tok, q, mtok)
        self._state = (p_lm, (w0, w, present, idx, tok, q, mtok))
        return p

    def update(self, tokens: np.ndarray) -> None:
        """tokens [n]: what occurred for the streams of the last mix()."""
        assert self._state is not None and len(self._state[0]) == len(tokens), \
            "update() without mix()"
        p_lm, mixed = self._state
        self._state = None
        y = np.asarray(tokens, dtype=np.int64)
        n = len(y)
        resp = np.ones(n)
        if mixed is not None:
            w0, w, present, idx, tok, q, mtok = mixed
            plm_y = p_lm[np.arange(n), y]
            qy = np.zeros((n, self.n_comp))
            if tok is not None:
                hit = q * (tok == y[:, None, None])
                for s in range(SLOTS):
                    qy[:, : self.k] = qy[:, : self.k] + hit[:, :, s]
            if mtok is not None:
                qy[:, -1] = mtok == y
            py = w0 * plm_y + _sum_columns(w * qy)
            resp = w0 * plm_y / py
            grad = w * (qy / py[:, None] - 1.0)
            mx.step_weights(self.W, self.config.mix_lr, grad, present, idx)
        if self.b is not None:
            self._update_bias(torch.from_numpy(p_lm), torch.from_numpy(y), resp)
        mx.update_components(self, y)

    def _update_bias(self, p_lm: torch.Tensor, y: torch.Tensor, resp: np.ndarray) -> None:
        """The SGD branches are the arithmetic that older portable files were made with,
        operation for operation: merging them with the AdaGrad ones would round differently
        and break those files (tests/golden/)."""
        n = len(y)
        lr = self.config.bias_lr
        r = [float(v) for v in resp]
        if self.b.ndim == 1 and self.g2 is not None:
            r = [v * shared_step(1.0, n, self.config.bias_sum) for v in r]
            g = p_lm[0] * r[0]
            for i in range(1, n):  # stream order: a fixed summation order
                g = g + p_lm[i] * r[i]
            for i in range(n):
                g[y[i]] -= r[i]
            self.b, self.g2 = self._adagrad(self.b, self.g2, g)
        elif self.b.ndim == 1:
            g = p_lm[0] * r[0]
            for i in range(1, n):  # stream order: a fixed summation order
                g = g + p_lm[i] * r[i]
            lr = shared_step(lr, n, self.config.bias_sum)
            b = self.b - g * lr
            for i in range(n):
                b[y[i]] += r[i] * lr
            self.b = b.clamp_(-CLIP, CLIP)
        elif self.g2 is not None:
            rr = torch.tensor(r, dtype=F64)[:, None]
            g = p_lm * rr
            g[torch.arange(n), y] -= rr[:, 0]
            self.b[:n], self.g2[:n] = self._adagrad(self.b[:n], self.g2[:n], g)
        else:
            rr = torch.tensor(r, dtype=F64)[:, None]
            b = self.b[:n] - p_lm * (rr * lr)
            b[torch.arange(n), y] += rr[:, 0] * lr
            self.b[:n] = b.clamp_(-CLIP, CLIP)

    def _adagrad(self, b: torch.Tensor, g2: torch.Tensor,
                 g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """bias.py's AdaGrad step in float64: +, *, / and sqrt are correctly rounded (IEEE
        754) on every machine, element by element, so b and g2 are the same everywhere."""
        g2 = g2 + g * g
        b = b - self.config.bias_lr * g / torch.sqrt(ADA_EPS + g2)
        return b.clamp_(-CLIP, CLIP), g2
