"""Token n-gram model: what followed each recent token context, in fixed-size hashed tables.

Orders 1..k: the context of order o is the last o tokens of a stream. All orders live in one
table of ``k * 2**bits`` rows; a row holds a 32-bit context check value and ``SLOTS``
(token, count) pairs. A follower not yet in its row replaces the weakest slot; when a count
reaches ``COUNT_LIMIT`` the row's counts are halved, so the model keeps adapting. A row whose
check value differs belongs to another context and is treated as empty (and is taken over
on update).

Everything is integer numpy arithmetic over the batch of streams: no per-token Python, no
dict/set iteration, no randomness. Streams that update the same row at the same step are
applied one after the other in stream order, so no count is lost and the result depends only
on the tokens.

Invariant: ``predict`` depends only on the tokens given to ``update`` before it, in order.
"""

from __future__ import annotations

import numpy as np

SLOTS = 4  # followers remembered per context
COUNT_LIMIT = 250  # halve a row's counts when one reaches this
_MULT = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing
_PAD = np.uint64(0xFFFFFFFF)  # history before a stream's first token


class NGram:
    """Hashed n-gram counts of orders 1..max_order over the streams of one frame."""

    def __init__(self, n_streams: int, max_order: int, bits: int = 20,
                 shared: bool = True) -> None:
        """shared: one table for all streams; else each stream hashes its own contexts."""
        if not 1 <= max_order <= 16:
            raise ValueError("n-gram order must be in 1..16")
        self.k = max_order
        self.bits = bits
        size = 1 << bits
        # Zero-initialised (lazily allocated pages): count 0 marks an empty slot.
        self.check = np.zeros(max_order * size, dtype=np.uint32)
        self.tok = np.zeros((max_order * size, SLOTS), dtype=np.int32)
        self.cnt = np.zeros((max_order * size, SLOTS), dtype=np.int32)
        self.history = np.full((n_streams, max_order), _PAD, dtype=np.uint64)  # newest last
        self.salt = (np.zeros(n_streams, np.uint64) if shared
                     else np.arange(1, n_streams + 1, dtype=np.uint64) * np.uint64(0x632BE5AB))
        self.offsets = (np.arange(max_order, dtype=np.int64) << bits)[None, :]
        self._rows, self._checks = self._keys(n_streams)

    def _keys(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Table rows [n, k] (int64) and check values [n, k] (uint32, never 0)."""
        h = self.salt[:n].copy()
        out = np.empty((n, self.k), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for o in range(self.k):
                h = (h ^ self.history[:n, -1 - o]) * _MULT + np.uint64(o + 1)
                out[:, o] = h ^ (h >> np.uint64(29))
        rows = (out & np.uint64((1 << self.bits) - 1)).astype(np.int64) + self.offsets
        checks = ((out >> np.uint64(32)) | np.uint64(1)).astype(np.uint32)
        return rows, checks

    def predict(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """For the first n streams: tokens [n, k, SLOTS] (int64) and counts [n, k, SLOTS]
        (int64, 0 = no prediction) of every order (axis 1: order 1 first)."""
        rows, checks = self._rows[:n], self._checks[:n]
        valid = self.check[rows] == checks
        tok = self.tok[rows].astype(np.int64)
        cnt = np.where(valid[:, :, None], self.cnt[rows], 0).astype(np.int64)
        return tok, cnt

    def update(self, tokens: np.ndarray) -> None:
        """Count tokens[i] as the follower of stream i's current contexts (every order)."""
        n = len(tokens)
        rows = self._rows[:n].reshape(-1)
        checks = self._checks[:n].reshape(-1)
        ys = np.repeat(np.asarray(tokens, dtype=np.int32), self.k)
        # Rows hit more than once this step are applied in rounds, in stream order.
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        first = np.r_[True, srt[1:] != srt[:-1]]
        group_start = np.maximum.accumulate(np.where(first, np.arange(len(srt)), 0))
        rank = np.empty(len(srt), dtype=np.int64)
        rank[order] = np.arange(len(srt)) - group_start
        rounds = int(rank.max()) + 1
        if rounds == 1:
            self._update_rows(rows, checks, ys)
        else:
            for r in range(rounds):
                sel = rank == r
                self._update_rows(rows[sel], checks[sel], ys[sel])
        self.history[:n, :-1] = self.history[:n, 1:]
        self.history[:n, -1] = np.asarray(tokens, dtype=np.uint64)
        self._rows[:n], self._checks[:n] = self._keys(n)

    def _update_rows(self, rows: np.ndarray, checks: np.ndarray, ys: np.ndarray) -> None:
        """One round: rows are distinct."""
        m = len(rows)
        ar = np.arange(m)
        fresh = self.check[rows] != checks
        tok = self.tok[rows]
        cnt = np.where(fresh[:, None], 0, self.cnt[rows])
        hit = (tok == ys[:, None]) & (cnt > 0)
        found = hit.any(axis=1)
        slot = np.where(found, hit.argmax(axis=1), cnt.argmin(axis=1))
        cnt[ar, slot] = np.where(found, cnt[ar, slot] + 1, 1)
        tok[ar, slot] = ys
        full = cnt[ar, slot] >= COUNT_LIMIT
        if full.any():
            cnt[full] = (cnt[full] + 1) >> 1
        self.tok[rows] = tok
        self.cnt[rows] = cnt
        self.check[rows] = checks
