"""Online bias head: an additive correction of the LM's logits for this document.

``p_lm = softmax(logits + b)``. After each step, b takes a gradient step on the code length.
For stream i with LM responsibility ``r_i = w_lm p_lm(y_i) / p(y_i)`` (1 when the LM codes
alone) the gradient is ``g = sum_i r_i (p_lm_i - onehot(y_i))`` (``per_token``: a step per
token, the default) or its mean over the streams (a step per lockstep step: files made before
that flag). The step is

- ``adaptive`` (AdaGrad, the default since mixer flag bit 6): ``G += g * g`` then
  ``b -= lr * g / sqrt(ADA_EPS + G)``, element-wise. A token's step shrinks as it is seen, so
  a rare word is learnt at its first occurrences and a common one settles;
- else plain SGD: ``b -= lr * g``;

then ``b`` is clipped to ``[-CLIP, CLIP]``. One b shared by the streams of a frame, or one per
stream.

Exactness: b and G are float64 and change only by correctly rounded element-wise operations.
The one sum over streams (the shared gradient) is exact: each stream's ``r_i p_lm_i`` is
rounded to a multiple of 2**-GRAD_BITS first (format 3), or summed term by term in stream
order (the legacy arithmetic of formats 1-2, kept operation for operation so their files
decode).
"""

from __future__ import annotations

import torch

from llmzip import fused
from llmzip.kernels import sqrt
from llmzip.settings import MixConfig

CLIP = 8.0
ADA_EPS = 0.25  # part of the format: the AdaGrad step is lr * g / sqrt(ADA_EPS + G)
GRAD_BITS = 40  # format 3: the shared gradient in units of 2**-40 (integers below 2**53)
GRAD_UNIT = float(1 << GRAD_BITS)
F64 = torch.float64


def shared_step(lr: float, n: int, per_token: bool) -> float:
    """The shared bias's step size for a lockstep step of n streams."""
    return lr if per_token else lr / n


class Bias:
    def __init__(self, vocab_size: int, config: MixConfig, streams: int,
                 legacy: bool = False) -> None:
        shape = (vocab_size,) if config.shared else (streams, vocab_size)
        self.b = torch.zeros(shape, dtype=F64)
        self.b32 = torch.zeros(shape, dtype=torch.float32)  # what apply() adds (format 3)
        self.g2 = torch.zeros(shape, dtype=F64) if config.bias_adaptive else None
        self.lr = config.bias_lr
        self.per_token = config.bias_sum
        self.legacy = legacy

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """logits [n, V] + b (float32 in format 3, float64 in the legacy arithmetic)."""
        b = self.b if self.legacy else self.b32
        return x + (b if b.ndim == 1 else b[: len(x)])

    def update(self, f: torch.Tensor, total: torch.Tensor, y: torch.Tensor,
               resp: torch.Tensor) -> None:
        """One step for the streams of the last mix: ``p_lm = f / total`` (f [n, V] float64
        integers, total [n, 1]), y [n] the tokens, resp [n] float64 the LM responsibilities."""
        if self.legacy:
            self._update_legacy(f / total, y, resp)
            return
        n = len(y)
        rows = torch.arange(n)
        if self.b.ndim == 1:
            c, ry = self.shared_factors(total, resp)
            if fused.usable(f):
                fused.bias_update(self, f, c, y, ry)  # the same bits, fused (fused.py)
                return
            u = torch.round(f * c)  # integers <= 2**40
            g = u.sum(dim=0)  # exact: below 2**53 for n < 2**12
            g.index_put_((y,), -ry, accumulate=True)  # exact integers
            g = g * (1.0 / GRAD_UNIT)
        else:
            g = f * (resp[:, None] / total)
            g[rows, y] -= resp
        if self.b.ndim == 1:
            self.b, self.g2 = self._step(self.b, self.g2, g)
            self.b32 = self.b.float()
        else:
            self.b[:n], g2 = self._step(self.b[:n], None if self.g2 is None else self.g2[:n], g)
            if g2 is not None:
                self.g2[:n] = g2
            self.b32[:n] = self.b[:n].float()

    def shared_factors(self, total: torch.Tensor,
                       resp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The shared bias's step in units of 2**-GRAD_BITS: per row the factor c [n, 1] (p_lm
        * c is r p_lm in units) and round(r) [n], r the responsibility times the step."""
        r = resp * shared_step(1.0, len(resp), self.per_token)
        return (r * GRAD_UNIT)[:, None] / total, torch.round(r * GRAD_UNIT)

    def _step(self, b: torch.Tensor, g2: torch.Tensor | None,
              g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """AdaGrad (or SGD) in float64: +, *, / and sqrt are correctly rounded (IEEE 754) on
        every machine, element by element."""
        if g2 is None:
            return (b - g * self.lr).clamp_(-CLIP, CLIP), None
        g2 = g2 + g * g
        b = b - self.lr * g / sqrt(ADA_EPS + g2)  # correctly rounded: not torch.sqrt
        return b.clamp_(-CLIP, CLIP), g2

    def _update_legacy(self, p_lm: torch.Tensor, y: torch.Tensor, resp: torch.Tensor) -> None:
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
            self.b, self.g2 = self._adagrad_legacy(self.b, self.g2, g)
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
            self.b[:n], self.g2[:n] = self._adagrad_legacy(self.b[:n], self.g2[:n], g)
        else:
            rr = torch.tensor(r, dtype=F64)[:, None]
            b = self.b[:n] - p_lm * (rr * lr)
            b[torch.arange(n), y] += rr[:, 0] * lr
            self.b[:n] = b.clamp_(-CLIP, CLIP)

    def _adagrad_legacy(self, b: torch.Tensor, g2: torch.Tensor,
                        g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g2 = g2 + g * g
        b = b - self.lr * g / torch.sqrt(ADA_EPS + g2)
        return b.clamp_(-CLIP, CLIP), g2
