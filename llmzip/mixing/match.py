"""Match model (LZP style): follow the most recent earlier occurrence of the current context.

A hash of a stream's last ``min_len`` tokens maps to the position that followed the latest
occurrence of those tokens (in any stream of the frame when shared, else in the same stream).
A stream without a match looks one up after each token and verifies it by comparing up to
``VERIFY`` tokens backwards (the verified length is the match length, so hash collisions are
rejected). While its predictions come true a match is followed and its length grows; a miss
drops it. Positions are global indices ``stream * steps + t`` into the frame's token table,
where t is the lockstep step (stream i observes its tokens at steps ``starts[i]`` on).

Invariant: a prediction only reads tokens observed at earlier steps (position t' < t of any
stream), exactly what the decoder knows, so both sides predict the same. Integer numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

VERIFY = 32  # most tokens compared backwards when a match is found
_MULT = np.uint64(0x9E3779B97F4A7C15)


class Match:
    """LZP match model over the streams of one frame."""

    def __init__(self, lengths: Sequence[int], min_len: int = 4, bits: int = 20,
                 shared: bool = True, starts: Sequence[int] | None = None) -> None:
        """lengths: tokens per stream; starts: the step of each stream's first token (0)."""
        if not 1 <= min_len <= VERIFY:
            raise ValueError("match length out of range")
        n = len(lengths)
        self.starts = np.zeros(n, np.int64) if starts is None else np.asarray(starts, np.int64)
        self.ends = self.starts + np.asarray(lengths, dtype=np.int64)  # step after the last
        self.steps = int(self.ends.max())
        self.min_len = min_len
        self.history = np.zeros((n, self.steps), dtype=np.int64)
        self.flat = self.history.reshape(-1)
        self.mask = np.uint64((1 << bits) - 1)
        self.table = np.zeros(1 << bits, dtype=np.int64)  # position + 1; 0 = empty
        self.ptr = np.full(n, -1, dtype=np.int64)  # global position of the predicted token
        self.length = np.zeros(n, dtype=np.int64)  # tokens matched so far
        self.t = 0  # steps observed
        self.salt = (np.zeros(n, np.uint64) if shared
                     else np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x51ED2701))

    def predict(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Predicted token [n] (-1 = none) and match length [n] (0 where none)."""
        ptr = self.ptr[:n]
        stream, pos = np.divmod(np.maximum(ptr, 0), self.steps)
        ok = (ptr >= 0) & (pos < self.t) & (pos < self.ends[stream])
        token = np.where(ok, self.flat[np.maximum(ptr, 0)], -1)
        return token, np.where(ok, self.length[:n], 0)

    def update(self, tokens: np.ndarray) -> None:
        """Observe tokens [n] of the first n streams at the current step."""
        n, t = len(tokens), self.t
        tokens = np.asarray(tokens, dtype=np.int64)
        predicted, _ = self.predict(n)
        right = (predicted == tokens) & (predicted >= 0)
        ptr, length = self.ptr[:n], self.length[:n]
        ptr[:] = np.where(right, ptr + 1, -1)
        length[:] = np.where(right, length + 1, 0)
        self.history[:n, t] = tokens
        self.t = t + 1
        ready = t + 1 - self.starts[:n] >= self.min_len  # has min_len tokens of its own
        if not ready.any():
            return
        h = self.salt[:n].copy()
        with np.errstate(over="ignore"):
            for k in range(self.min_len):
                h = (h ^ self.history[:n, t - k].astype(np.uint64)) * _MULT
        rows = ((h ^ (h >> np.uint64(31))) & self.mask).astype(np.int64)
        lost = np.flatnonzero((ptr < 0) & ready)
        if len(lost):
            cand = self.table[rows[lost]] - 1  # position following the earlier occurrence
            # Verify backwards: candidate tokens cand-1-j vs this stream's t-j (j < VERIFY),
            # both inside their own stream and observed.
            j = np.arange(VERIFY)
            c_pos = cand[:, None] - 1 - j
            own = lost[:, None] * self.steps + t - j
            c_stream = np.maximum(cand, 0) // self.steps
            start = (c_stream * self.steps + self.starts[c_stream])[:, None]
            inside = (c_pos >= start) & (t - j >= self.starts[lost][:, None])
            same = inside & (self.flat[np.maximum(c_pos, 0)] == self.flat[np.maximum(own, 0)])
            run = np.where(same.all(axis=1), VERIFY, same.argmin(axis=1))
            good = (cand >= 0) & (run >= self.min_len)
            ptr[lost[good]] = cand[good]
            length[lost[good]] = run[good]
        # Written after all lookups of this step: points at position t + 1 of stream i, which
        # predict() accepts only once it has been observed.
        ready = np.flatnonzero(ready)
        self.table[rows[ready]] = ready * self.steps + self.t + 1
