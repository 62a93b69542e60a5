"""The mixer's arithmetic of formats 1-2 (``--portable`` files of llmzip 0.1), behind one
boundary: kept operation for operation so those files decode (tests/golden/), used only for
them (codec/predictor.py picks :class:`LegacyMixer` where the header names the legacy engine).
Merging any of it with format 3's would round differently.

The LM's frequencies are ``f = max(1, round(2**36 exp(x + b - max)))`` (exactmath's
polynomial, float64 logits and bias); the buckets and the mixture take the LM's distribution
``f / sum(f)`` itself; the bias head's gradient is summed term by term in stream order.
"""

from __future__ import annotations

import numpy as np
import torch

from llmzip.mixing.bias import ADA_EPS, CLIP, F64, Bias, shared_step
from llmzip.mixing.mixer import Mixer
from llmzip.numeric import exactmath as xm

FREQ_BITS = 36


def legacy_lm_frequencies(x: torch.Tensor) -> torch.Tensor:
    """Formats 1-2: logits (+ bias) [n, V] float64 -> integer frequencies [n, V] float64."""
    e = xm.exp(x - x.amax(dim=1, keepdim=True))
    return torch.round(e * float(1 << FREQ_BITS)).clamp_(min=1.0)


class LegacyBias(Bias):
    """The bias head of formats 1-2: float64 logits plus b, and its own update."""

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """logits [n, V] float64 + b (float64)."""
        b = self.b
        return x + (b if b.ndim == 1 else b[: len(x)])

    def update(self, f: torch.Tensor, total: torch.Tensor, y: torch.Tensor,
               resp: torch.Tensor) -> None:
        """Bias.update's step, as formats 1-2 took it."""
        self._update(f / total, y, resp)

    def _update(self, p_lm: torch.Tensor, y: torch.Tensor, resp: torch.Tensor) -> None:
        """Formats 1-2 (``--portable`` of llmzip 0.1), operation for operation: merging this
        with the format-3 rule would round differently and break those files
        (tests/golden/)."""
        n = len(y)
        lr = self.lr
        r = [float(v) for v in resp]
        if self.b.ndim == 1 and self.g2 is not None:
            r = [v * shared_step(1.0, n, self.per_token) for v in r]
            g = p_lm[0] * r[0]
            for i in range(1, n):  # stream order: a fixed summation order
                g = g + p_lm[i] * r[i]
            for i in range(n):
                g[y[i]] -= r[i]
            self.b, self.g2 = self._adagrad(self.b, self.g2, g)
        elif self.b.ndim == 1:
            g = p_lm[0] * r[0]
            for i in range(1, n):
                g = g + p_lm[i] * r[i]
            lr = shared_step(lr, n, self.per_token)
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
        g2 = g2 + g * g
        b = b - self.lr * g / torch.sqrt(ADA_EPS + g2)
        return b.clamp_(-CLIP, CLIP), g2


class LegacyMixer(Mixer):
    """Mixer with the LM's part computed as formats 1-2 did (no fused kernels)."""

    dtype = F64
    bias_class = LegacyBias

    def _lm_frequencies(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
        if self.bias is not None:
            x = self.bias.apply(x)
        f = legacy_lm_frequencies(x)
        return f, f.sum(dim=1, keepdim=True), False

    @staticmethod
    def _lm_buckets(fn: np.ndarray, tn: np.ndarray, rows: np.ndarray, top: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        p_lm = fn / tn[:, None]
        return p_lm[rows[:, None], top], p_lm.max(axis=1), p_lm

    @staticmethod
    def _lm_part(f: torch.Tensor, tn: np.ndarray, w0: np.ndarray, fast: bool,
                 p_lm: np.ndarray | None) -> np.ndarray:
        return p_lm * w0[:, None]
