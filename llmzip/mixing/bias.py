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
order (the legacy arithmetic of formats 1-2, mixing/legacy.py, kept operation for operation so
their files decode).
"""

from __future__ import annotations

import torch

from llmzip.format.mixconfig import MixConfig
from llmzip.mixing import kernels
from llmzip.numeric import jit
from llmzip.numeric.exactmath import sqrt

CLIP = 8.0
ADA_EPS = 0.25  # part of the format: the AdaGrad step is lr * g / sqrt(ADA_EPS + G)
GRAD_BITS = 40  # format 3: the shared gradient in units of 2**-40 (integers below 2**53)
GRAD_UNIT = float(1 << GRAD_BITS)
F64 = torch.float64


def shared_step(lr: float, n: int, per_token: bool) -> float:
    """The shared bias's step size for a lockstep step of n streams."""
    return lr if per_token else lr / n


class Bias:
    """The bias head of format 3 (mixing/legacy.py: that of formats 1-2)."""

    def __init__(self, vocab_size: int, config: MixConfig, streams: int) -> None:
        shape = (vocab_size,) if config.shared else (streams, vocab_size)
        self.b = torch.zeros(shape, dtype=F64)
        self.b32 = torch.zeros(shape, dtype=torch.float32)  # what apply() adds (format 3)
        self.g2 = torch.zeros(shape, dtype=F64) if config.bias_adaptive else None
        self.lr = config.bias_lr
        self.per_token = config.bias_sum

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """logits [n, V] float32 + b (as float32)."""
        b = self.b32
        return x + (b if b.ndim == 1 else b[: len(x)])

    def update(self, f: torch.Tensor, total: torch.Tensor, y: torch.Tensor,
               resp: torch.Tensor) -> None:
        """One step for the streams of the last mix: ``p_lm = f / total`` (f [n, V] float64
        integers, total [n, 1]), y [n] the tokens, resp [n] float64 the LM responsibilities."""
        n = len(y)
        rows = torch.arange(n)
        if self.b.ndim == 1:
            c, ry = self.shared_factors(total, resp)
            if jit.usable(f):
                kernels.bias_update(self, f, c, y, ry)  # the same bits, fused (kernels.py)
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
