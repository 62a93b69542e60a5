"""The one place where distributions are combined.

    p = w_0 * softmax(logits + b) + sum_j w_j * q_j

``b`` is the online bias head (bias.py); the q_j are sparse distributions: one per n-gram
order (ngram.py: counts of a context's remembered followers, normalised), the recall
(recall.py: votes of the most similar earlier hidden states, normalised; it needs the LM's
hidden states, which ``mix`` takes beside the logits) and the match model (match.py: all mass
on the token that followed the current match). The weights are a softmax over mixing logits
``z_0 = 0`` (LM) and, for each component j that has a prediction,
``z_j = W_j[own] + W_j[lm] + W_j[cand]``: table entries selected by the component's own
confidence (count/distinct followers, best cosine, or match length), by the LM's top
probability and by the
LM's probability of the component's top candidate. W is trained online by SGD on the code
length -log p(y). A component without a prediction gets weight 0.

The dense work per step is one float32 softmax (numpy's SIMD exp; float64 exp costs 3-4x)
scaled into float64 once; everything else is sparse gathers and scatter-adds.

Invariants: numpy only, in a fixed order, no randomness, no hashing of Python objects, so the
encoder and the decoder compute bit-identical probabilities on the same machine; every
probability is > 0 (w_0 > 0 and exp is clamped above float32 underflow) and rows sum to 1 up to
rounding. With every component off, ``mix`` returns exactly ``lm_probabilities``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llmzip.bias import Bias
from llmzip.match import Match
from llmzip.ngram import SLOTS, NGram
from llmzip.recall import Recall

# Version 1: the fields below up to mix_lr. Version 2 (written only when recall is on) appends
# flags2 (bit 0: recall), recall_bits and recall_theta.
_CONFIG_V1 = "<BBBBBee"  # version, flags, ngram_order, match_min, table_bits, lrs (half)
_CONFIG_V2 = _CONFIG_V1 + "BBe"
_MIN_EXP = np.float32(-87.0)  # exp(-87) is still a normal float32

# Bucket edges of the gating contexts (part of the format: changing them needs a new version).
_TOTAL_EDGES = np.array([2, 3, 5, 9, 17, 41])  # n-gram followers seen -> 0..6
_LEN_EDGES = np.array([5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 64])  # -> 0..15
_PMAX_EDGES = np.array([0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9, 0.97])  # -> 0..8
_PCAND_EDGES = np.array([1e-4, 1e-3, 1e-2, 0.05, 0.15, 0.35, 0.6, 0.85])  # -> 0..8
_OWN = 21  # own-confidence entries per component (n-gram 7 x 3, match 16)
_LM_AT, _CAND_AT, _TABLE = _OWN, _OWN + 9, _OWN + 18
_INIT = -3.0  # initial own-entry logit: a new component starts with little weight
_W_CLIP = 12.0
_GEO_INIT = 0.05  # geometric mode: initial own-entry weight
_S_RANGE = (-20.0, 40.0)  # a candidate's log boost


def _softmax32(x: np.ndarray) -> np.ndarray:
    """In place on float32 logits [n, V]: x <- exp(x - max) (each >= exp(-87) > 0).
    Returns 1 / row sums (float64 [n]), so the distribution is x * that[:, None]."""
    x -= x.max(axis=1, keepdims=True)
    low = x.min(axis=1) < _MIN_EXP
    if low.any():
        x[low] = np.maximum(x[low], _MIN_EXP)
    np.exp(x, out=x)
    return 1.0 / x.sum(axis=1, dtype=np.float64)


def lm_probabilities(lm_logits: np.ndarray) -> np.ndarray:
    """Softmax of logits [n, V] as float64 [n, V] (float32 exp, float64 normalisation)."""
    x = np.array(lm_logits, dtype=np.float32)
    return np.multiply(x, _softmax32(x)[:, None], dtype=np.float64)


class UnknownSettings(ValueError):
    """Mixer settings of a version or with flags this llmzip does not know: a newer llmzip
    made them (or the file is corrupt)."""


def _half(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0 and float(np.float16(value)) == value):
        raise ValueError(f"{name} must be a non-negative float16 value, got {value!r}")


@dataclass(frozen=True)
class MixConfig:
    """Which components run and every parameter the decoder must reproduce (to_bytes)."""

    ngram: bool = True
    match: bool = True
    bias: bool = True
    shared: bool = True  # statistics shared across the streams of a frame
    geometric: bool = False  # log-linear boosting of candidates, else the linear mixture
    ngram_order: int = 4  # n-gram orders 1..ngram_order
    match_min: int = 6  # tokens hashed to find a match
    table_bits: int = 20  # log2 rows per n-gram order and of the match table
    bias_lr: float = 0.5  # float16 values, stored exactly; tuned in benchmarks/MIXING.md
    mix_lr: float = 0.25
    # The shared bias takes a step of bias_lr per token (the sum over the streams) rather
    # than per step (their mean). False in files made before this flag existed.
    bias_sum: bool = True
    # The bias steps by AdaGrad (bias.py), not plain SGD. False in files made before it.
    bias_adaptive: bool = True
    # Hidden-state recall (recall.py): a ring of 2**recall_bits states, votes exp(theta cos).
    recall: bool = True
    recall_bits: int = 16
    recall_theta: float = 48.0

    def __post_init__(self) -> None:
        if not 1 <= self.ngram_order <= 8:
            raise ValueError("ngram_order must be in 1..8")
        if not 1 <= self.match_min <= 32:
            raise ValueError("match_min must be in 1..32")
        if not 10 <= self.table_bits <= 24:
            raise ValueError("table_bits must be in 10..24")
        _half("bias_lr", self.bias_lr)
        _half("mix_lr", self.mix_lr)
        _half("recall_theta", self.recall_theta)
        if not 8 <= self.recall_bits <= 24:
            raise ValueError("recall_bits must be in 8..24")
        if self.recall and self.geometric:
            raise ValueError("recall needs the linear mixture")

    @classmethod
    def lm_only(cls) -> MixConfig:
        """Every component off: the LM's softmax alone."""
        return cls(ngram=False, match=False, bias=False, recall=False)

    def describe(self) -> str:
        """One readable line, for ``llmzip info``."""
        if not (self.ngram or self.match or self.bias or self.recall):
            return "LM alone"
        parts = []
        if self.ngram:
            parts.append(f"n-gram orders 1..{self.ngram_order}")
        if self.recall:
            parts.append(f"recall of 2^{self.recall_bits} states, theta {self.recall_theta:g}")
        if self.match:
            parts.append(f"match from {self.match_min} tokens")
        if self.bias:
            rule = "AdaGrad" if self.bias_adaptive else "SGD"
            per = "token" if self.bias_sum else "step"
            parts.append(f"bias {rule} lr {self.bias_lr:g} per {per}")
        mixing = "geometric" if self.geometric else "linear"
        parts.append(f"{mixing} mixing lr {self.mix_lr:g}")
        parts.append(f"tables 2^{self.table_bits}")
        parts.append("shared by the streams" if self.shared else "per stream")
        return ", ".join(parts)

    def to_bytes(self) -> bytes:
        flags = (self.ngram | self.match << 1 | self.bias << 2 | self.shared << 3
                 | self.geometric << 4 | self.bias_sum << 5 | self.bias_adaptive << 6)
        v1 = (self.ngram_order, self.match_min, self.table_bits, self.bias_lr, self.mix_lr)
        if not self.recall:  # files without recall stay readable by older versions
            return struct.pack(_CONFIG_V1, 1, flags, *v1)
        return struct.pack(_CONFIG_V2, 2, flags, *v1, 1, self.recall_bits, self.recall_theta)

    @classmethod
    def from_bytes(cls, data: bytes) -> MixConfig:
        """Inverse of to_bytes; ValueError on anything malformed."""
        version = data[0] if data else None
        layout = {1: _CONFIG_V1, 2: _CONFIG_V2}.get(version)
        if layout is None and version is not None:
            raise UnknownSettings(f"unknown mixer settings version {version}")
        if layout is None or len(data) != struct.calcsize(layout):
            raise ValueError("mixer settings have the wrong length")
        _, flags, order, match_min, bits, bias_lr, mix_lr, *v2 = struct.unpack(layout, data)
        if flags >> 7:
            raise UnknownSettings(f"unknown mixer flags {flags:#04x}")
        flags2, recall_bits, theta = v2 or (0, 16, 48.0)
        if flags2 >> 1:
            raise UnknownSettings(f"unknown mixer flags2 {flags2:#04x}")
        if version == 2 and not flags2:
            raise ValueError("mixer settings version 2 without recall")
        return cls(bool(flags & 1), bool(flags & 2), bool(flags & 4), bool(flags & 8),
                   bool(flags & 16), order, match_min, bits, float(bias_lr), float(mix_lr),
                   bool(flags & 32), bool(flags & 64), bool(flags2 & 1), recall_bits,
                   float(theta))


def _bucket(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.searchsorted(edges, values, side="right")


def add_candidates(p: np.ndarray, w: np.ndarray, present: np.ndarray, k: int,
                   tok: np.ndarray | None, q: np.ndarray | None,
                   mtok: np.ndarray | None) -> None:
    """p [n, V] += each component's weight w [n, J] times its distribution, in place: the
    n-gram followers (tok, q; first k components) then the match token. ``add.at`` adds in
    index order, so the result is the same on every machine."""
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


def candidates(mixer, n: int, recalled: tuple | None = None) -> tuple:
    """The components' predictions for the first n streams, for the linear mixture: which
    component has one (present [n, J]), its top token and own-confidence bucket ([n, J] each),
    the slot components' candidates and their frequencies (tok, q [n, k, S]: the n-gram orders,
    then recall; None without either) and the match token (mtok [n], -1 for none; None without
    match). ``recalled`` is Recall.predict's result. Integer work and one division: the same
    on every machine. ``mixer`` has ngram, match, k and n_comp."""
    J = mixer.n_comp
    present = np.zeros((n, J), dtype=bool)
    top = np.zeros((n, J), dtype=np.int64)
    own = np.zeros((n, J), dtype=np.int64)
    tok = q = mtok = None
    blocks = []
    if mixer.ngram is not None:
        blocks.append(mixer.ngram.predict(n))  # [n, order, S] each
    if recalled is not None:
        blocks.append((recalled[0][:, None], recalled[1][:, None]))
    if blocks:
        k = mixer.k
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
    if mixer.match is not None:
        mtok, mlen = mixer.match.predict(n)
        present[:, -1] = mtok >= 0
        own[:, -1] = _bucket(_LEN_EDGES, mlen)
        top[:, -1] = np.maximum(mtok, 0)
    return present, top, own, tok, q, mtok


def need_hidden(recall: Recall | None, hidden) -> tuple | None:
    """Recall's prediction for the hidden states (None without recall)."""
    if recall is None:
        return None
    if hidden is None:
        raise ValueError("recall needs the LM's hidden states")
    return recall.predict(hidden)


def _add_to_entries(W: np.ndarray, comp: np.ndarray, entries: np.ndarray,
                    step: np.ndarray) -> None:
    """W[comp[i], entries[i, :]] += step[i] for each i, in this order (``add.at``: the same
    sums on every machine), then clip."""
    per = entries.shape[1]
    np.add.at(W, (np.repeat(comp, per), entries.reshape(-1)), np.repeat(step, per))
    np.clip(W, -_W_CLIP, _W_CLIP, out=W)


def step_weights(W: np.ndarray, lr: float, grad: np.ndarray, present: np.ndarray,
                 idx: np.ndarray) -> None:
    """The linear mixture's SGD step (both mixers): W += lr * grad at each present
    component's table entries idx [n, J, 3], in place, component-major."""
    jj, ii = np.nonzero(present.T)
    _add_to_entries(W, jj, idx[ii, jj], lr * grad[ii, jj])


def update_components(mixer, y: np.ndarray) -> None:
    """Teach the n-gram, recall and match models the tokens y, in this order (both mixers)."""
    for component in (mixer.ngram, mixer.recall, mixer.match):
        if component is not None:
            component.update(y)


class ContextMixer:
    """Combines the LM with the adaptive components for the streams of one frame.

    Call ``mix`` then ``update`` once per step, with the active streams (always a prefix of
    the streams: stream i takes part from step ``starts[i]`` to ``starts[i] + lengths[i]``);
    the encoder and the decoder make the same calls in the same order.
    """

    def __init__(self, vocab_size: int, lengths: Sequence[int], config: MixConfig,
                 starts: Sequence[int] | None = None) -> None:
        self.config = config
        self.vocab_size = vocab_size
        n = len(lengths)
        c = config
        self.ngram = (NGram(n, c.ngram_order, c.table_bits, c.shared) if c.ngram else None)
        self.match = (Match(lengths, c.match_min, c.table_bits, c.shared, starts)
                      if c.match else None)
        self.bias = (Bias(vocab_size, c.bias_lr, None if c.shared else n, c.bias_sum,
                          c.bias_adaptive) if c.bias else None)
        self.recall = (Recall(c.recall_bits, c.recall_theta) if c.recall else None)
        self.k = (c.ngram_order if c.ngram else 0) + c.recall  # slot components
        self.n_comp = self.k + bool(c.match)
        self.W = np.zeros((self.n_comp, _TABLE))
        self.W[:, :_OWN] = _GEO_INIT if c.geometric else _INIT
        # Component of each candidate entry (geometric mode): k * SLOTS n-gram slots, match.
        self.entry_comp = np.repeat(np.arange(self.n_comp), [SLOTS] * self.k + [1] * c.match)
        self._state: tuple | None = None

    def mix(self, lm_logits: np.ndarray, hidden=None) -> np.ndarray:
        """lm_logits [n, V] -> probabilities float64 [n, V], each > 0, rows summing to 1.
        ``hidden`` [n, D]: the LM's final hidden states (needed with recall)."""
        recalled = need_hidden(self.recall, hidden)
        x = np.array(lm_logits, dtype=np.float32)
        n = len(x)
        if self.bias is not None:
            self.bias.apply(x)
        inv = _softmax32(x)
        if self.n_comp == 0:
            self._state = (x, inv, None)
            return np.multiply(x, inv[:, None], dtype=np.float64)
        if self.config.geometric:
            return self._mix_geometric(x, inv)

        rows = np.arange(n)
        J = self.n_comp
        present, top, own, tok, q, mtok = candidates(self, n, recalled)
        p_top = x[rows[:, None], top] * inv[:, None]
        lm_b = _bucket(_PMAX_EDGES, inv)  # the LM's top probability is 1 / sum
        idx = np.stack([own, np.broadcast_to(_LM_AT + lm_b[:, None], own.shape),
                        _CAND_AT + _bucket(_PCAND_EDGES, p_top)], axis=2)  # [n, J, 3]
        z = self.W[np.arange(J)[None, :, None], idx].sum(axis=2)
        z = np.where(present, z, -np.inf)
        zmax = np.maximum(z.max(axis=1), 0.0)
        w = np.exp(z - zmax[:, None])
        w0 = np.exp(-zmax)
        norm = w0 + w.sum(axis=1)
        w /= norm[:, None]
        w0 /= norm

        p = np.multiply(x, (w0 * inv)[:, None], dtype=np.float64)
        add_candidates(p, w, present, self.k, tok, q, mtok)
        self._state = (x, inv, (w0, w, present, idx, tok, q, mtok))
        return p

    def update(self, tokens: np.ndarray) -> None:
        """tokens [n]: what occurred for the streams of the last mix()."""
        y = np.asarray(tokens, dtype=np.int64)
        n = len(y)
        assert self._state is not None and len(self._state[1]) == n, "update() without mix()"
        x, inv, mixed = self._state
        self._state = None
        resp = np.ones(n)
        if mixed is not None and self.config.geometric:
            self._update_geometric(y, *mixed)
        elif mixed is not None:
            w0, w, present, idx, tok, q, mtok = mixed
            plm_y = x[np.arange(n), y] * inv
            qy = np.zeros((n, self.n_comp))
            if tok is not None:
                qy[:, : self.k] = (q * (tok == y[:, None, None])).sum(axis=2)
            if mtok is not None:
                qy[:, -1] = mtok == y
            py = w0 * plm_y + (w * qy).sum(axis=1)
            resp = w0 * plm_y / py
            grad = w * (qy / py[:, None] - 1.0)  # -d(code length)/dz_j
            step_weights(self.W, self.config.mix_lr, grad, present, idx)
        if self.bias is not None:
            self.bias.update(x, inv, y, resp)
        update_components(self, y)

    def _mix_geometric(self, x: np.ndarray, inv: np.ndarray) -> np.ndarray:
        """p(v) = p_lm(v) exp(S_v) / Z: each candidate entry e (n-gram slot or match) adds
        w_e * F_e to the log boost S of its token, with F_e = log(1 + c_e / (d * p_lm)) for an
        n-gram follower seen c_e times among d distinct, log(1 + 1 / p_lm) for the match."""
        n = len(x)
        rows = np.arange(n)
        parts_tok, parts_f, parts_own = [], [], []
        if self.ngram is not None:
            tok, cnt = self.ngram.predict(n)  # [n, k, S]
            total = cnt.sum(axis=2)
            distinct = (cnt > 0).sum(axis=2)
            own = _bucket(_TOTAL_EDGES, total) * 3 + np.clip(distinct - 1, 0, 2)
            parts_tok.append(np.where(cnt > 0, tok, -1).reshape(n, -1))
            parts_f.append((cnt / np.maximum(distinct, 1)[:, :, None]).reshape(n, -1))
            parts_own.append(np.repeat(own, SLOTS, axis=1))
        if self.match is not None:
            mtok, mlen = self.match.predict(n)
            parts_tok.append(mtok[:, None])
            parts_f.append(np.ones((n, 1)))
            parts_own.append(_bucket(_LEN_EDGES, mlen)[:, None])
        tok = np.concatenate(parts_tok, axis=1)  # [n, E], -1 = no candidate
        valid = tok >= 0
        safe = np.maximum(tok, 0)
        plm = x[rows[:, None], safe] * inv[:, None]  # [n, E]
        f = np.where(valid, np.log1p(np.concatenate(parts_f, axis=1) / plm), 0.0)
        lm_b = _bucket(_PMAX_EDGES, inv)
        own = np.concatenate(parts_own, axis=1)
        idx = np.stack([own, np.broadcast_to(_LM_AT + lm_b[:, None], own.shape),
                        _CAND_AT + _bucket(_PCAND_EDGES, plm)], axis=2)  # [n, E, 3]
        we = self.W[self.entry_comp[None, :, None], idx].sum(axis=2)
        eq = (tok[:, :, None] == tok[:, None, :]) & valid[:, :, None]  # [n, E, E]
        s = np.einsum("nef,nf->ne", eq, we * f)  # total log boost of each entry's token
        np.clip(s, *_S_RANGE, out=s)
        first = valid & ~np.triu(eq, 1).any(axis=1)  # first entry of each distinct token
        boost = plm * np.exp(s)  # p_lm(v) exp(S_v), unnormalised
        z = 1.0 + np.where(first, boost - plm, 0.0).sum(axis=1)
        p = np.multiply(x, (inv / z)[:, None], dtype=np.float64)
        r, c = np.nonzero(first)
        p[r, tok[r, c]] = boost[r, c] / z[r]
        self._state = (x, inv, (tok, valid, f, idx, boost / z[:, None]))
        return p

    def _update_geometric(self, y: np.ndarray, tok: np.ndarray, valid: np.ndarray,
                          f: np.ndarray, idx: np.ndarray, p_tok: np.ndarray) -> None:
        """SGD on -log p(y): d/dw_e = (p(tok_e) - [tok_e == y]) * F_e."""
        grad = (p_tok - (tok == y[:, None])) * f
        ii, ee = np.nonzero(valid)
        _add_to_entries(self.W, self.entry_comp[ee], idx[ii, ee],
                        -self.config.mix_lr * grad[ii, ee])
