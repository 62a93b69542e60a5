"""The one place where distributions are combined, the same bits on every machine.

    p_lm = f / sum(f)                         (the LM's softmax as integer frequencies)
    p    = w_0 * p_lm + sum_j w_j * q_j       (the linear mixture)

``f`` are exact integers, so their sum is exact and ``p_lm`` is the same float64 array
everywhere. Format 3 takes them from a table: ``f = T[round(s (max - x))]`` with
``T[i] = max(1, round(2**32 exp(-i / 256)))`` over the logits x (plus the bias head's b):
logits in steps of 1/s nat (s = MixConfig.lm_scale, 256 by default: a temperature of 256 / s;
``max - x`` is float32 and s an integer, so the product is exact in float64), which costs
nothing measurable and replaces an exp over the vocabulary by one lookup.
The legacy arithmetic of formats 1-2 (mixing/legacy.py) computes
``f = max(1, round(2**36 exp(x + b - max)))`` with exactmath's polynomial.

The q_j are sparse distributions: one per n-gram order (ngram.py: counts of a context's
remembered followers, normalised), the recall (recall.py: votes of the most similar earlier
hidden states) and the match model (match.py: all mass on the token that followed the
current match). The weights are a softmax over mixing logits ``z_0 = 0`` (LM) and, for each
component j that has a prediction, ``z_j = W_j[own] + W_j[lm] + W_j[cand]``: table entries
selected by the component's own confidence (count/distinct followers, best cosine, or match
length), by the LM's top probability and by the LM's probability of the component's top
candidate. W is trained online by SGD on the code length -log p(y). A component without a
prediction gets weight 0.

Everything but the table lookup is element-wise float64 arithmetic in a fixed order, ``exp``
is exactmath's polynomial, every sum is of integers or written out term by term (over
components, n-gram slots, streams), and numpy's ``add.at`` adds in index order. Every
probability is > 0 and rows sum to 1 up to rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
import torch

from llmzip.format.mixconfig import MixConfig
from llmzip.mixing import kernels
from llmzip.mixing.bias import Bias
from llmzip.mixing.match import Match
from llmzip.mixing.ngram import SLOTS, NGram
from llmzip.mixing.recall import Recall
from llmzip.numeric import exactmath as xm
from llmzip.numeric import jit

F64 = torch.float64
FREQ_BITS = 32  # format 3: the top token's frequency (table value at 0)
STEP = 256.0  # format 3: logits in steps of 1/256 nat
TABLE_SIZE = 1 + int(STEP * (FREQ_BITS + 1) * 0.6931471805599453)  # past it: frequency 1

# Bucket edges of the gating contexts (part of the format: changing them needs a new version).
_TOTAL_EDGES = np.array([2, 3, 5, 9, 17, 41])  # n-gram followers seen -> 0..6
_LEN_EDGES = np.array([5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 64])  # -> 0..15
_PMAX_EDGES = np.array([0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9, 0.97])  # -> 0..8
_PCAND_EDGES = np.array([1e-4, 1e-3, 1e-2, 0.05, 0.15, 0.35, 0.6, 0.85])  # -> 0..8
_OWN = 21  # own-confidence entries per component (n-gram 7 x 3, match 16)
_LM_AT, _CAND_AT, _TABLE = _OWN, _OWN + 9, _OWN + 18
_INIT = -3.0  # initial own-entry logit: a new component starts with little weight
_W_CLIP = 12.0
# The warm start (MixConfig.warm): W as the default mixer left it after the default model's
# training texts (benchmarks/mixer_start.py, RESULTS.md "Warm start"), in 1/64. Rows: n-gram
# orders 1..4 (higher orders take order 4's), recall, match; columns as W's. Part of the
# format: a new table needs a new mixer settings version.
_START = np.array([
    [-238, -192, -192, -191, -230, -192, -195, -188, -243, -193, -201, -281, -191, -198, -254,
     -192, -193, -237, -192, -193, -217, -28, -60, -42, -48, -31, -39, -48, -38, -39, -119, -87,
     -79, -28, 0, -13, -16, -1, -29],
    [-258, -192, -192, -196, -221, -192, -193, -211, -239, -188, -197, -237, -192, -194, -205,
     -193, -196, -202, -192, -193, -192, 5, -35, -55, -33, -22, -29, -20, -21, -33, -64, -60, -66,
     7, -17, -10, -7, -5, -21],
    [-255, -192, -192, -191, -210, -192, -190, -200, -221, -189, -200, -215, -192, -190, -194,
     -192, -194, -204, -192, -192, -192, -10, -27, -38, -14, -19, -7, -16, -7, -16, -34, -32, -44,
     -16, -10, 0, -11, -1, -7],
    [-216, -192, -192, -187, -190, -192, -185, -197, -200, -188, -195, -206, -192, -195, -195,
     -192, -192, -192, -192, -192, -192, 9, 2, -23, -8, -8, 0, -11, 1, -4, -9, -16, -11, -10, 1, 5,
     -1, 7, -6],
    [-196, -197, -241, -183, -194, -263, -190, -192, -175, -192, -197, -224, -191, -195, -203,
     -190, -182, -196, -189, -193, -200, -8, -27, -22, -9, -24, -16, -29, 2, -19, -105, -60, -29,
     -14, 44, -4, -23, 6, 33],
    [-192, -192, -187, -185, -205, -197, -183, -196, -193, -190, -192, -191, -183, -190, -193,
     -192, -192, -192, -192, -192, -192, -6, 0, 14, 8, 5, 5, -7, -5, 0, -3, -5, -5, 6, -2, 8, 10,
     3, 2],
]) / 64.0


def _bucket(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.searchsorted(edges, values, side="right")


def _exp(x: np.ndarray) -> np.ndarray:
    return xm.exp(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))).numpy()


def _sum_columns(a: np.ndarray) -> np.ndarray:
    """a[:, 0] + a[:, 1] + ... in that order."""
    total = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        total = total + a[:, j]
    return total


def lm_frequencies(x: torch.Tensor, scale: int = int(STEP)) -> torch.Tensor:
    """Format 3: logits (+ bias) [n, V] float32 -> integer frequencies [n, V] float64, the
    logits in steps of 1/scale nat (MixConfig.lm_scale: a temperature of 256 / scale)."""
    d = x.amax(dim=1, keepdim=True) - x
    d = d.to(F64) * float(scale)  # exact: a float32 times an integer below 2**24
    idx = torch.round(d).clamp_(max=TABLE_SIZE - 1).to(torch.int64)
    return _table()[idx]


def _table() -> torch.Tensor:
    return xm.exp_table(8, FREQ_BITS, 1, TABLE_SIZE).to(F64)


@cache
def _table64() -> np.ndarray:
    return _table().numpy()


def add_candidates(p: np.ndarray, w: np.ndarray, present: np.ndarray, k: int,
                   tok: np.ndarray | None, q: np.ndarray | None,
                   mtok: np.ndarray | None) -> None:
    """p [n, V] += each component's weight w [n, J] times its distribution, in place: the
    n-gram and recall followers (tok, q; first k components) then the match token.
    ``add.at`` adds in index order, so the result is the same on every machine."""
    n, V = p.shape
    rows = np.arange(n)
    flat = p.reshape(-1)
    if tok is not None:
        vals = w[:, :k, None] * q
        ok = vals > 0
        np.add.at(flat, (rows[:, None, None] * V + tok)[ok], vals[ok])
    if mtok is not None:
        ok = present[:, -1]
        np.add.at(flat, rows[ok] * V + mtok[ok], w[ok, -1])


def start_table(config: MixConfig) -> np.ndarray:
    """The warm start's W [components, entries] for these settings' components."""
    rows = [min(j, 3) for j in range(config.ngram_order)] if config.ngram else []
    rows += [4] * config.recall + [5] * config.match
    return _START[rows].copy()


class Mixer:
    """Combines the LM with the adaptive components for the streams of one frame.

    Call ``mix`` then ``update`` once per step, with the active streams (always a prefix of
    the streams, format/layout.py); the encoder and the decoder make the same calls in the
    same order. Format 3's arithmetic; mixing/legacy.py's LegacyMixer overrides the three
    hooks (the LM's frequencies, its share of the buckets, its part of the mixture) with that
    of formats 1-2.
    """

    dtype = torch.float32  # of the logits the LM's frequencies are taken from
    bias_class = Bias

    def __init__(self, vocab_size: int, lengths: Sequence[int], config: MixConfig,
                 starts: Sequence[int] | None = None) -> None:
        if vocab_size >= 1 << 20:
            raise ValueError("vocabulary too large for exact frequency sums")
        c = config
        self.config = config
        self.vocab_size = vocab_size
        n = len(lengths)
        self.ngram = NGram(n, c.ngram_order, c.table_bits, c.shared) if c.ngram else None
        self.match = (Match(lengths, c.match_min, c.table_bits, c.shared, starts)
                      if c.match else None)
        self.recall = Recall(c.recall_bits, c.recall_theta) if c.recall else None
        self.bias = self.bias_class(vocab_size, c, n) if c.bias else None
        self.k = (c.ngram_order if c.ngram else 0) + c.recall  # slot components
        self.n_comp = self.k + bool(c.match)
        if c.warm:
            self.W = start_table(c)
        else:
            self.W = np.zeros((self.n_comp, _TABLE))
            self.W[:, :_OWN] = _INIT
        self._state: tuple | None = None

    def mix(self, logits: torch.Tensor, hidden: torch.Tensor | None = None) -> np.ndarray:
        """logits [n, V] (any device) -> probabilities [n, V] float64, each > 0. ``hidden``
        [n, D]: the LM's final hidden states (needed with recall)."""
        if self.recall is not None and hidden is None:
            raise ValueError("recall needs the LM's hidden states")
        recalled = None if self.recall is None else self.recall.predict(hidden)
        x = logits.to(device="cpu", dtype=self.dtype)
        n = x.shape[0]
        f, total, fast = self._lm_frequencies(x)
        if self.n_comp == 0:
            self._state = (f, total, None)
            return (f / total).numpy()
        rows = np.arange(n)
        fn, tn = f.numpy(), total.numpy()[:, 0]
        present, top, own, tok, q, mtok = self._candidates(n, recalled)
        p_top, p_max, p_lm = self._lm_buckets(fn, tn, rows, top)
        idx = np.stack([own, np.broadcast_to(_LM_AT + _bucket(_PMAX_EDGES, p_max)[:, None],
                                             own.shape),
                        _CAND_AT + _bucket(_PCAND_EDGES, p_top)], axis=2)  # [n, J, 3]
        comp = np.arange(self.n_comp)[None, :]
        z = self.W[comp, idx[..., 0]] + self.W[comp, idx[..., 1]]
        z = z + self.W[comp, idx[..., 2]]
        zmax = np.maximum(np.where(present, z, -np.inf).max(axis=1), 0.0)
        w = np.where(present, _exp(z - zmax[:, None]), 0.0)
        w0 = _exp(-zmax)
        norm = w0 + _sum_columns(w)
        w = w / norm[:, None]
        w0 = w0 / norm
        p = self._lm_part(f, tn, w0, fast, p_lm)
        add_candidates(p, w, present, self.k, tok, q, mtok)
        self._state = (f, total, (w0, w, present, idx, tok, q, mtok))
        return p

    def _lm_frequencies(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """The LM's integer frequencies f [n, V] float64 of logits x (plus the bias), their row
        sums [n, 1] and whether the fused kernels made them."""
        if jit.usable(x):  # the same bits, fused (kernels.py)
            f, total = kernels.lm_frequencies(x, None if self.bias is None else self.bias.b32,
                                              _table64(), self.config.lm_scale)
            return f, total, True
        if self.bias is not None:
            x = self.bias.apply(x)
        f = lm_frequencies(x, self.config.lm_scale)
        return f, f.sum(dim=1, keepdim=True), False  # exact: integers below 2**53

    @staticmethod
    def _lm_buckets(fn: np.ndarray, tn: np.ndarray, rows: np.ndarray, top: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The LM's probabilities of the components' top tokens [n, J] and its largest [n]
        (the table's largest frequency over the row sum), for the weights' buckets; and the
        LM's distribution where this arithmetic keeps it (None)."""
        return fn[rows[:, None], top] / tn[:, None], float(1 << FREQ_BITS) / tn, None

    @staticmethod
    def _lm_part(f: torch.Tensor, tn: np.ndarray, w0: np.ndarray, fast: bool,
                 p_lm: np.ndarray | None) -> np.ndarray:
        """The LM's part of the mixture, ``f * (w0 / total)`` [n, V] float64 (one rounding
        per entry): a new array, the components' parts are added to it."""
        if fast:
            return kernels.mixture(f, w0 / tn)
        return (f * torch.from_numpy(w0 / tn)[:, None]).numpy()

    def _candidates(self, n: int, recalled: tuple | None) -> tuple:
        """The components' predictions for the first n streams: which component has one
        (present [n, J]), its top token and own-confidence bucket ([n, J] each), the slot
        components' candidates and their frequencies (tok, q [n, k, S]: the n-gram orders,
        then recall; None without either) and the match token (mtok [n], -1 for none; None
        without match). Integer work and one division: the same on every machine."""
        J = self.n_comp
        present = np.zeros((n, J), dtype=bool)
        top = np.zeros((n, J), dtype=np.int64)
        own = np.zeros((n, J), dtype=np.int64)
        tok = q = mtok = None
        blocks = []
        if self.ngram is not None:
            blocks.append(self.ngram.predict(n))  # [n, order, S] each
        if recalled is not None:
            blocks.append((recalled[0][:, None], recalled[1][:, None]))
        if blocks:
            k = self.k
            tok = np.concatenate([b[0] for b in blocks], axis=1)
            cnt = np.concatenate([b[1] for b in blocks], axis=1)
            total = cnt.sum(axis=2)
            present[:, :k] = total > 0
            q = cnt / np.maximum(total, 1)[:, :, None]
            distinct = np.minimum((cnt > 0).sum(axis=2), 3)
            own[:, :k] = _bucket(_TOTAL_EDGES, total) * 3 + np.maximum(distinct - 1, 0)
            if recalled is not None:
                own[:, k - 1] = recalled[2]
            top[:, :k] = np.take_along_axis(tok, cnt.argmax(axis=2)[:, :, None], 2)[..., 0]
        if self.match is not None:
            mtok, mlen = self.match.predict(n)
            present[:, -1] = mtok >= 0
            own[:, -1] = _bucket(_LEN_EDGES, mlen)
            top[:, -1] = np.maximum(mtok, 0)
        return present, top, own, tok, q, mtok

    def update(self, tokens: np.ndarray) -> None:
        """tokens [n]: what occurred for the streams of the last mix()."""
        assert self._state is not None and len(self._state[0]) == len(tokens), \
            "update() without mix()"
        f, total, mixed = self._state
        self._state = None
        y = np.asarray(tokens, dtype=np.int64)
        n = len(y)
        resp = np.ones(n)
        if mixed is not None:
            w0, w, present, idx, tok, q, mtok = mixed
            fy = f.numpy()[np.arange(n), y]
            tn = total.numpy()[:, 0]
            plm_y = fy / tn
            qy = np.zeros((n, self.n_comp))
            if tok is not None:
                hit = q * (tok == y[:, None, None])
                for s in range(SLOTS):
                    qy[:, : self.k] = qy[:, : self.k] + hit[:, :, s]
            if mtok is not None:
                qy[:, -1] = mtok == y
            py = w0 * plm_y + _sum_columns(w * qy)
            resp = w0 * plm_y / py
            grad = w * (qy / py[:, None] - 1.0)  # -d(code length)/dz_j
            self._step_weights(grad, present, idx)
        if self.bias is not None:
            self.bias.update(f, total, torch.from_numpy(y), torch.from_numpy(resp))
        for component in (self.ngram, self.recall, self.match):
            if component is not None:
                component.update(y)

    def _step_weights(self, grad: np.ndarray, present: np.ndarray, idx: np.ndarray) -> None:
        """W += mix_lr * grad at each present component's table entries idx [n, J, 3], in
        place, component-major, in index order (``add.at``), then clip."""
        jj, ii = np.nonzero(present.T)
        entries = idx[ii, jj]
        per = entries.shape[1]
        step = self.config.mix_lr * grad[ii, jj]
        np.add.at(self.W, (np.repeat(jj, per), entries.reshape(-1)), np.repeat(step, per))
        np.clip(self.W, -_W_CLIP, _W_CLIP, out=self.W)
