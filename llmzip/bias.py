"""Online bias head: an additive correction of the LM's logits for this document.

``p_lm = softmax(logits + b)``. After each step, b takes a gradient step on the code length:
for stream i with LM responsibility ``r_i = w_lm p_lm(y_i) / p(y_i)`` (1 when the LM codes
alone), ``b -= lr * sum_i r_i (p_lm_i - onehot(y_i))`` (``per_token``: a step per token, the
default) or ``lr * mean_i ...`` (a step per lockstep step: files made before the flag), then
``b`` is clipped to ``[-CLIP, CLIP]``. One b shared by the streams of a frame, or one per
stream (a step per token either way).

The mixer owns the softmax (float32 exp, see mixer.py); this class only holds b and applies
the update, in a fixed order with numpy only, so encoder and decoder hold the same b.
"""

from __future__ import annotations

import numpy as np

CLIP = 8.0


def shared_step(lr: float, n: int, per_token: bool) -> float:
    """The shared bias's step size for a lockstep step of n streams (both numeric modes)."""
    return lr if per_token else lr / n


class Bias:
    def __init__(self, vocab_size: int, lr: float, streams: int | None = None,
                 per_token: bool = True) -> None:
        """streams=None: one bias [V] shared by all streams; else one per stream [S, V]."""
        shape = vocab_size if streams is None else (streams, vocab_size)
        self.b = np.zeros(shape)
        self.b32 = np.zeros(shape, dtype=np.float32)  # what apply() adds
        self.lr = lr
        self.per_token = per_token

    def apply(self, x: np.ndarray) -> None:
        """Add the bias to logits x [n, V] float32, in place."""
        x += self.b32 if self.b.ndim == 1 else self.b32[: len(x)]

    def update(self, e: np.ndarray, scale: np.ndarray, tokens: np.ndarray,
               resp: np.ndarray) -> None:
        """e [n, V] float32 with p_lm = e * scale[:, None]; resp [n] the LM responsibilities."""
        n = len(tokens)
        if self.b.ndim == 1:
            lr = shared_step(self.lr, n, self.per_token)
            c = (resp * scale * lr).astype(np.float32)
            self.b -= np.einsum("i,ij->j", c, e)
            np.add.at(self.b, tokens, resp * lr)
            np.clip(self.b, -CLIP, CLIP, out=self.b)
            self.b32[:] = self.b
        else:
            b = self.b[:n]
            b -= e * (resp * scale * self.lr)[:, None]
            b[np.arange(n), tokens] += resp * self.lr
            np.clip(b, -CLIP, CLIP, out=b)
            self.b32[:n] = b
