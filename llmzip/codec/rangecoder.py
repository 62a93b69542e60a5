"""Range coding of token streams with constriction.

One queue range coder per frame carries the symbols of all streams interleaved in step order
(step 0: streams 0..n-1, step 1: ...), so each step is one batched constriction call (two
with ``split``). Both sides hand constriction float64 probabilities;
``Categorical(perfect=False)`` quantises them to 24-bit integer frequencies (every symbol > 0)
by the same deterministic rule on encode and decode.

Every symbol's frequency is at least 1 in 2**24, so a vocabulary of V tokens takes V / 2**24
of the mass from the likely ones: 0.3% (0.004 bits a token) for 49,152 tokens, 0.9% (0.013
bits) for 151,936. With ``split`` (files whose header has the split flag) a token is coded in
two parts, its group of G consecutive ids (G = :func:`group_size`) and its place in the group,
so each part's floor is taken over a few hundred symbols instead. The parts' probabilities
come from the token probabilities by exact steps: q = trunc(p * 2**40) + 1 is an integer
below 2**53, so a group's sum of q is the same in any order on any machine, and each part's
probability is one IEEE division (q / group sum, group sum / row sum).

constriction reads the probability buffer as C-ordered whatever its strides: a transposed
(Fortran-ordered) array is silently misread. Both sides pass it through ``ascontiguousarray``.
"""

from __future__ import annotations

import math

import constriction
import numpy as np

from llmzip.numeric import jit
from llmzip.numeric.jit import F64, PAR, njit, part, prange, threads_for

_FAMILY = constriction.stream.model.Categorical(perfect=False)
_SCALE = float(1 << 40)  # q = trunc(p * 2**40) + 1: exact integers, sums below 2**53
PRECISION = 24  # constriction's frequencies: integers summing to 2**24, each at least 1
SLACK_BITS = 256  # coded bits a payload may lack against its symbols' information (the flush)


def _cap(n: int) -> float:
    """The largest probability a symbol of an n-symbol part can get: every other symbol keeps
    a frequency of at least 1 in 2**24."""
    return 1.0 - (n - 1) / (1 << PRECISION)


def least_bits_per_token(vocab: int, split: bool) -> float:
    """The fewest bits any token can cost: its parts' largest probabilities (:func:`_cap`)."""
    if not split:
        return -math.log2(_cap(vocab))
    G = group_size(vocab)
    return -math.log2(_cap(max(2, -(-vocab // G)))) - math.log2(_cap(G))


def most_tokens(payload_bytes: int, vocab: int, split: bool) -> int:
    """The most tokens a payload of this size can hold. A range coder's output is at least the
    information of what it coded (-log2 of each symbol's quantised probability, summed) less a
    flush (:data:`SLACK_BITS`), and each token costs at least :func:`least_bits_per_token`:
    a frame that declares more is forged or damaged."""
    return int((8 * payload_bytes + SLACK_BITS) / least_bits_per_token(vocab, split))


def group_size(vocab: int) -> int:
    """G of the split coding: the power of two nearest above sqrt(vocab) (256 for 49,152
    tokens, 512 for 151,936), so both parts have a few hundred symbols."""
    return 1 << max(1, math.ceil(math.log2(max(vocab, 2)) / 2))


class _Split:
    """The two parts of a row of token probabilities (see the module docstring)."""

    def __init__(self, probabilities: np.ndarray) -> None:
        self.p = probabilities
        self.G = group_size(probabilities.shape[1])
        if jit.available():  # the same integers in one pass (selfcheck.py checks)
            self.sums, totals = fast_split_sums(probabilities, self.G)
        else:
            self.sums, totals = split_sums(probabilities, self.G)
        self.groups = self.sums / totals  # [n, groups]
        if self.groups.shape[1] == 1:  # constriction takes two symbols at least
            self.groups = np.pad(self.groups, ((0, 0), (0, 1)))

    def within(self, groups: np.ndarray) -> np.ndarray:
        """The probabilities [n, G] of the places in each row's group (zeros past V)."""
        n, V = self.p.shape
        cols = groups[:, None] * self.G + np.arange(self.G)[None, :]
        p = self.p[np.arange(n)[:, None], np.minimum(cols, V - 1)]
        q = np.where(cols < V, np.trunc(p * _SCALE) + 1.0, 0.0)
        return q / self.sums[np.arange(n), groups][:, None]


def split_sums(p: np.ndarray, G: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference of :func:`fast_split_sums`: the sums [n, ceil(V / G)] of
    q = trunc(p * 2**40) + 1 over each group of G ids, and the row sums [n, 1] (integers below
    2**53 in float64: the same in any order)."""
    q = np.trunc(p * _SCALE) + 1.0
    return np.add.reduceat(q, np.arange(0, p.shape[1], G), axis=1), q.sum(axis=1, keepdims=True)





@njit(**PAR)
def group_sums(p, G, sums, totals, chunks):
    """_Split's sums: sums [n, groups] of q = trunc(p * 2**40) + 1 over each group of
    G ids of p [n, V] (float64 in [0, 1]), totals [n] = their row sums. int64 sums of
    integers below 2**53: exact in any order."""
    n, V = p.shape
    for c in prange(chunks):
        start, stop = part(c, chunks, n)
        for i in range(start, stop):
            pi = p[i]
            t = np.int64(0)
            for g in range(sums.shape[1]):
                s = np.int64(0)
                stop = min(V, g * G + G)
                for j in range(g * G, stop):
                    s += np.int64(pi[j] * _SCALE)  # truncation
                s += stop - g * G
                sums[i, g] = F64(s)
                t += s
            totals[i] = F64(t)



def fast_split_sums(p: np.ndarray, G: int) -> tuple[np.ndarray, np.ndarray]:
    """_Split's group sums [n, ceil(V / G)] and row sums [n, 1] of p [n, V] float64."""
    n, V = p.shape
    sums = np.empty((n, -(-V // G)), dtype=np.float64)
    totals = np.empty((n, 1), dtype=np.float64)
    group_sums(np.ascontiguousarray(p), G, sums, totals[:, 0], threads_for(n))
    return sums, totals


class Encoder:
    """Collects symbols; :meth:`finish` returns the compressed bytes."""

    def __init__(self, split: bool = False) -> None:
        self._coder = constriction.stream.queue.RangeEncoder()
        self.split = split

    def encode(self, symbols: np.ndarray, probabilities: np.ndarray) -> None:
        """symbols [n] int, probabilities [n, V] float64 (rows sum to ~1, each <= 1)."""
        symbols = np.asarray(symbols, dtype=np.int64)
        if not self.split:
            self._encode(symbols, probabilities)
            return
        parts = _Split(np.asarray(probabilities, np.float64))
        groups = symbols // parts.G
        self._encode(groups, parts.groups)
        self._encode(symbols - groups * parts.G, parts.within(groups))

    def _encode(self, symbols: np.ndarray, probabilities: np.ndarray) -> None:
        self._coder.encode(np.ascontiguousarray(symbols, dtype=np.int32), _FAMILY,
                           np.ascontiguousarray(probabilities, np.float64))

    def finish(self) -> bytes:
        return self._coder.get_compressed().astype("<u4").tobytes()


class Decoder:
    """Decodes symbols from bytes made by :class:`Encoder`.

    The work a payload can cost is bounded by its size: constriction's decoder reads zeros
    past the end of its data and would decode forever, so the decoder adds up a lower bound of
    the information of each decoded symbol and stops (ValueError) once that passes the
    payload's bits and :data:`SLACK_BITS`, which no payload the encoder made can reach. The
    bound: constriction's fast quantisation gives a symbol of probability p (of a row summing
    to s) a frequency of at most ``p / s * (2**24 - n) + 2``, so its quantised probability is
    at most ``min(_cap(n), p / s + 2**-23)`` (and a little float slack)."""

    def __init__(self, data: bytes, split: bool = False) -> None:
        self.split = split
        if len(data) % 4:
            raise ValueError("range-coded payload length is not a multiple of 4")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        self._coder = constriction.stream.queue.RangeDecoder(words)
        self.budget = 8.0 * len(data) + SLACK_BITS  # bits the decoded symbols may take
        self.spent = 0.0  # a lower bound of the bits they took

    def decode(self, probabilities: np.ndarray) -> np.ndarray:
        """One symbol per row of probabilities [n, V]; returns int64 [n]. Corrupt data gives
        ValueError (constriction signals it with an AssertionError)."""
        try:
            if not self.split:
                return self._decode(probabilities)
            parts = _Split(np.asarray(probabilities, np.float64))
            groups = self._decode(parts.groups)
            symbols = groups * parts.G + self._decode(parts.within(groups))
            if symbols.max(initial=0) >= parts.p.shape[1]:
                raise ValueError("a token past the vocabulary")
            return symbols
        except (AssertionError, RuntimeError, ValueError) as e:
            raise ValueError(f"invalid range-coded data ({e})") from None

    def _decode(self, probabilities: np.ndarray) -> np.ndarray:
        probabilities = np.ascontiguousarray(probabilities, np.float64)
        symbols = self._coder.decode(_FAMILY, probabilities).astype(np.int64)
        n, V = probabilities.shape
        p = probabilities[np.arange(n), symbols] / probabilities.sum(axis=1)
        upper = np.minimum(_cap(V), p * (1 + 2.0**-30) + (2.0**-23 + 2.0**-30))
        self.spent -= float(np.log2(upper).sum())
        if self.spent > self.budget:
            raise ValueError("more symbols than the compressed data can hold")
        return symbols
