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
stream (a step per token either way).

The mixer owns the softmax (float32 exp, see mixer.py); this class only holds b (and G) and
applies the update, in a fixed order with numpy only, so encoder and decoder hold the same b.
"""

from __future__ import annotations

import numpy as np

CLIP = 8.0
ADA_EPS = 0.25  # part of the format: the AdaGrad step is lr * g / sqrt(ADA_EPS + G)


def shared_step(lr: float, n: int, per_token: bool) -> float:
    """The shared bias's step size for a lockstep step of n streams (both numeric modes)."""
    return lr if per_token else lr / n


class Bias:
    def __init__(self, vocab_size: int, lr: float, streams: int | None = None,
                 per_token: bool = True, adaptive: bool = False) -> None:
        """streams=None: one bias [V] shared by all streams; else one per stream [S, V]."""
        shape = vocab_size if streams is None else (streams, vocab_size)
        self.b = np.zeros(shape)
        self.b32 = np.zeros(shape, dtype=np.float32)  # what apply() adds
        self.g2 = np.zeros(shape) if adaptive else None  # AdaGrad's sum of squared gradients
        self.lr = lr
        self.per_token = per_token

    def apply(self, x: np.ndarray) -> None:
        """Add the bias to logits x [n, V] float32, in place."""
        x += self.b32 if self.b.ndim == 1 else self.b32[: len(x)]

    def update(self, e: np.ndarray, scale: np.ndarray, tokens: np.ndarray,
               resp: np.ndarray) -> None:
        """e [n, V] float32 with p_lm = e * scale[:, None]; resp [n] the LM responsibilities.
        The SGD branches keep the exact operations older files were made with."""
        n = len(tokens)
        if self.b.ndim == 1 and self.g2 is not None:
            f = shared_step(1.0, n, self.per_token)
            g = np.einsum("i,ij->j", (resp * scale * f).astype(np.float32), e).astype(np.float64)
            np.add.at(g, tokens, -(resp * f))
            self._adagrad(self.b, self.g2, g)
            self.b32[:] = self.b
        elif self.b.ndim == 1:
            lr = shared_step(self.lr, n, self.per_token)
            c = (resp * scale * lr).astype(np.float32)
            self.b -= np.einsum("i,ij->j", c, e)
            np.add.at(self.b, tokens, resp * lr)
            np.clip(self.b, -CLIP, CLIP, out=self.b)
            self.b32[:] = self.b
        elif self.g2 is not None:
            g = e * (resp * scale)[:, None]
            g[np.arange(n), tokens] -= resp
            b, g2 = self.b[:n], self.g2[:n]
            self._adagrad(b, g2, g)
            self.b32[:n] = b
        else:
            b = self.b[:n]
            b -= e * (resp * scale * self.lr)[:, None]
            b[np.arange(n), tokens] += resp * self.lr
            np.clip(b, -CLIP, CLIP, out=b)
            self.b32[:n] = b

    def _adagrad(self, b: np.ndarray, g2: np.ndarray, g: np.ndarray) -> None:
        """In place on views of self.b and self.g2 (float64)."""
        g2 += g * g
        b -= self.lr * g / np.sqrt(ADA_EPS + g2)
        np.clip(b, -CLIP, CLIP, out=b)
