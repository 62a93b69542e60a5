"""Hidden-state recall: which tokens followed contexts like the current one, earlier in the frame.

Every step stores, for each active stream, the LM's hidden state (the residual stream before
the final norm) together with the token that followed it. For a new state the prediction is a
neural cache (Grave et al., 2017) over all streams of the frame: the K stored states most
similar by cosine vote for their tokens with weight ``exp(theta * (cos - best))``. The n-gram
and match models find exact repeats of tokens; this finds contexts that *mean* the same, in
any stream, beyond the LM's window.

Invariant (both numeric modes, any machine, any BLAS): the prediction is a function of the
hidden states and tokens given so far, and of nothing else. Every step is exact or correctly
rounded, in an order that no library chooses:
- states are quantised per row to 20-bit integers (power-of-two scale, as
  exactmath.quantize_rows), projected by a fixed +-1 matrix to PROJ dimensions (a float64
  product of integers below 2**53: exact in any order) and quantised again to |q| <= 2**BITS;
- dot products of those are integers below 2**24: numeric/intmm.py's exact 16-bit product
  of the queries with the stored keys (int16, in its blocked layout), or, without numba, a
  float32 matrix product of the same integers (exact in any order); squared norms are
  integer sums;
- ``cos = dot * (1/sqrt(|a|^2)) * (1/sqrt(|b|^2))``: IEEE-rounded float64 operations;
- the K-th largest cosine is a value, and every entry at least that similar votes (ties are
  all kept, so no selection algorithm's tie order matters);
- votes are integers ``round(2**VOTE_BITS * exactmath.exp(theta * (cos - best)))``, summed
  exactly per token; a stream's SLOTS best tokens are taken by (votes desc, token asc).
"""

from __future__ import annotations

import numpy as np
import torch

from llmzip.mixing import kernels
from llmzip.mixing.ngram import SLOTS
from llmzip.numeric import exactmath as xm
from llmzip.numeric import intmm, jit

# The float products run in torch, not numpy: numpy's BLAS has its own threads, which spin after
# each call and slowed the model's next step by a third on 2 cores (benchmarks/MIXING.md).

# Format constants: files depend on every value below (a change needs new mixer settings).
PROJ = 256  # dimensions compared (a fixed random projection of the hidden state)
IN_BITS = 20  # hidden states as integers before the projection
BITS = 7  # |q| <= 128 after it: PROJ * 128**2 < 2**24 (float32 dot products exact)
VOTE_BITS = 16
K = 8  # most similar stored states that vote
# Own-confidence of the gating (mixer.py): best cosine -> 0..6, times distinct tokens 1/2/3+.
COS_EDGES = np.array([0.8, 0.88, 0.92, 0.95, 0.97, 0.99])
_SEED = 0x5EED_4EC4_11


def quantize(x: np.ndarray, bits: int) -> np.ndarray:
    """float64 rows -> integer-valued float64 with |q| <= 2**bits: x * 2**(bits - e) rounded,
    2**e the smallest power of two above the row's largest |x| (exact scaling, one rounding)."""
    top = np.abs(x).max(axis=1, keepdims=True)
    e = np.frexp(top)[1]
    return np.round(np.ldexp(x, bits - e))


def projection(dim: int) -> np.ndarray:
    """The fixed [dim, PROJ] matrix of +-1 (float64): bit 63 of splitmix64(seed + index)."""
    z = np.arange(dim * PROJ, dtype=np.uint64) + np.uint64(_SEED)
    with np.errstate(over="ignore"):
        z = z * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return np.where(z >> np.uint64(63), 1.0, -1.0).reshape(dim, PROJ)


class Recall:
    """A ring of the last 2**capacity_bits (projected state, next token) pairs of a frame."""

    def __init__(self, capacity_bits: int, theta: float) -> None:
        self.capacity = 1 << capacity_bits
        self.theta = float(theta)
        self.proj = np.zeros((0, PROJ))  # [D, PROJ], made at the first predict
        # entry j: lanes 2 (j % 16) and 2 (j % 16) + 1 of tile j // 16 (intmm.block's layout)
        self.keys = np.zeros((self.capacity // intmm.COLS, PROJ // 2, 2 * intmm.COLS), np.int16)
        self.inv_norm = np.zeros(self.capacity, dtype=np.float64)
        self.tokens = np.zeros(self.capacity, dtype=np.int64)
        self.size = 0  # entries stored (<= capacity)
        self.next = 0  # ring position of the next entry
        self._query: tuple[np.ndarray, np.ndarray] | None = None

    def _keys_of(self, hidden: np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(hidden, torch.Tensor):
            hidden = hidden.detach().to(device="cpu", dtype=torch.float64).numpy()
        x = np.asarray(hidden, dtype=np.float64)
        if self.proj.shape[0] != x.shape[1]:
            if self.size:
                raise ValueError("hidden size changed within a frame")
            self.proj = projection(x.shape[1])
        y = torch.from_numpy(quantize(x, IN_BITS)) @ torch.from_numpy(self.proj)
        return quantize(y.numpy(), BITS).astype(np.float32)

    def predict(self, hidden: np.ndarray | torch.Tensor
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hidden states [n, D] of the active streams -> tokens [n, SLOTS] (int64), votes
        [n, SLOTS] (int64, 0 = empty slot) and the own-confidence bucket [n] (0..20)."""
        q = self._keys_of(hidden)
        inv = _inv_norm(q)
        self._query = (q, inv)
        n, m = len(q), self.size
        tok = np.zeros((n, SLOTS), dtype=np.int64)
        votes = np.zeros((n, SLOTS), dtype=np.int64)
        if m == 0:
            return tok, votes, np.zeros(n, dtype=np.int64)
        dots = self._dots(q)
        if m > K and jit.available():  # the same set of voters and cosines, in one pass
            rows, cols, sim = kernels.voters(dots, inv, self.inv_norm[:m], K)
            return self._votes(n, rows, cols, sim, tok, votes)
        cos = dots.astype(np.float64)
        cos *= inv[:, None]
        cos *= self.inv_norm[None, :m]
        if m > K:
            part = np.argpartition(cos, m - K, axis=1)[:, m - K:]  # [n, K], the K-th first
            kth = np.take_along_axis(cos, part[:, :1], axis=1)
            ge = cos >= kth
            if np.all(ge.sum(axis=1) == K):  # no ties at the K-th: the same set
                rows, cols = np.repeat(np.arange(n), K), part.reshape(-1)
            else:
                rows, cols = np.nonzero(ge)
        else:
            rows, cols = np.repeat(np.arange(n), m), np.tile(np.arange(m), n)
        return self._votes(n, rows, cols, cos[rows, cols], tok, votes)

    def stored(self) -> np.ndarray:
        """The keys of the stored entries [size, PROJ] (float32 integers), by ring position."""
        tiles = -(-self.size // intmm.COLS)
        k = self.keys[:tiles].reshape(tiles, PROJ // 2, intmm.COLS, 2).transpose(0, 2, 1, 3)
        return k.reshape(tiles * intmm.COLS, PROJ)[:self.size].astype(np.float32)

    def _dots(self, q: np.ndarray) -> np.ndarray:
        """The exact dot products [n, size] of the queries q (float32 integers) with the stored
        keys: int64 from intmm's kernel, or float32 from torch's product of the same integers."""
        m = self.size
        if jit.available() and intmm.available:
            tiles = -(-m // intmm.COLS)
            return intmm.product(q, self.keys[:tiles], m, jit.threads_for(tiles))
        return (torch.from_numpy(q) @ torch.from_numpy(self.stored()).T).numpy()

    def _votes(self, n: int, rows: np.ndarray, cols: np.ndarray, sim: np.ndarray,
               tok: np.ndarray, votes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The voters (row, column, cosine: any order) -> predict's result."""
        best = np.full(n, -np.inf)
        np.maximum.at(best, rows, sim)
        w = xm.exp(torch.from_numpy(self.theta * (sim - best[rows]))).numpy()
        w = np.round(w * float(1 << VOTE_BITS)).astype(np.int64)
        # Sum the votes per (stream, token); keep each stream's SLOTS best tokens.
        uniq, inverse = np.unique((rows << 32) + self.tokens[cols], return_inverse=True)
        total = np.bincount(inverse, weights=w).astype(np.int64)  # exact: integers < 2**53
        urow, utok = uniq >> 32, uniq & 0xFFFFFFFF
        order = np.lexsort((utok, -total, urow))
        urow, utok, total = urow[order], utok[order], total[order]
        starts = np.r_[0, np.flatnonzero(urow[1:] != urow[:-1]) + 1]
        rank = np.arange(len(urow)) - np.repeat(starts, np.diff(np.r_[starts, len(urow)]))
        keep = (rank < SLOTS) & (total > 0)
        tok[urow[keep], rank[keep]] = utok[keep]
        votes[urow[keep], rank[keep]] = total[keep]
        distinct = np.minimum((votes > 0).sum(axis=1), 3)
        own = np.searchsorted(COS_EDGES, best, side="right") * 3 + np.maximum(distinct - 1, 0)
        return tok, votes, own

    def update(self, tokens: np.ndarray) -> None:
        """Store the states of the last ``predict`` with the tokens [n] that followed them,
        in stream order (the oldest entries are overwritten once the ring is full)."""
        assert self._query is not None, "update() without predict()"
        q, inv = self._query
        self._query = None
        tokens = np.asarray(tokens, dtype=np.int64)
        if len(q) > self.capacity:  # only the newest fit
            q, inv, tokens = q[-self.capacity:], inv[-self.capacity:], tokens[-self.capacity:]
        n = len(q)
        at = (self.next + np.arange(n)) % self.capacity
        tile, lane = at[:, None] // intmm.COLS, 2 * (at[:, None] % intmm.COLS)
        pair = np.arange(PROJ // 2)[None, :]
        self.keys[tile, pair, lane] = q[:, 0::2]
        self.keys[tile, pair, lane + 1] = q[:, 1::2]
        self.inv_norm[at] = inv
        self.tokens[at] = tokens
        self.next = int((self.next + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)


def _inv_norm(q: np.ndarray) -> np.ndarray:
    """1 / |q| per row (float64; 0 for a zero row): an exact integer sum, then IEEE sqrt and
    division."""
    qi = q.astype(np.int64)
    sq = np.einsum("ij,ij->i", qi, qi)
    with np.errstate(divide="ignore"):
        inv = 1.0 / np.sqrt(sq.astype(np.float64))
    return np.where(sq > 0, inv, 0.0)
