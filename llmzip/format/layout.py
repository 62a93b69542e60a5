"""How a frame's tokens are laid out over the streams that are coded in lockstep.

A frame of N tokens is cut into S contiguous segments, one per stream. Stream i codes its
tokens at steps ``starts[i] .. starts[i] + lengths[i] - 1``: every stream starts at step 0,
except that with priming (``prime`` = P > 0 and more than one stream) streams 1.. start at
step P, after stream 0 coded its first P tokens alone (codec/predictor.py). Lengths are
non-increasing and the ends ``starts + lengths`` too, so the streams active at a step are
always a prefix ``[0, active(t))``, and a frame takes ``lengths[0]`` steps.

The usual split (:func:`even_lengths`) is stored as two numbers (container.py's even frames);
any other split as its list of lengths. Everything here is a pure function of the lengths and
``prime``, which the container stores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_AUTO_STREAMS = 64  # automatic stream count: more gives little speed and costs KV memory


def even_lengths(total: int, streams: int, prime: int) -> tuple[int, ...]:
    """Tokens per stream of the usual split: ``total - prime`` tokens in ``streams`` parts as
    equal as possible (the first ones one longer), plus ``prime`` for stream 0 when there is
    more than one stream. ValueError unless every stream gets a token."""
    if streams < 1 or total < streams or (streams > 1 and total - prime < streams):
        raise ValueError("too few tokens for the streams")
    if streams == 1:
        return (total,)
    q, r = divmod(total - prime, streams)
    lengths = [q + 1] * r + [q] * (streams - r)
    lengths[0] += prime
    return tuple(lengths)


def auto_streams(n_tokens: int, segment: int) -> int:
    """The stream count compress picks for a frame of n tokens: segments of at least
    ``segment`` tokens (the level's, settings.LEVELS), at most MAX_AUTO_STREAMS of them."""
    return min(MAX_AUTO_STREAMS, max(1, n_tokens // segment))


@dataclass(frozen=True)
class Layout:
    """The streams of one frame: their token counts and the step each starts at."""

    lengths: tuple[int, ...]
    prime: int = 0

    def __post_init__(self) -> None:
        n = len(self.lengths)
        ends = [s + n_i for s, n_i in zip(self.starts, self.lengths)]
        if (n == 0 or min(self.lengths) < 1 or self.prime < 0
                or any(b > a for a, b in zip(ends, ends[1:]))):
            raise ValueError("stream lengths must be positive and end in order")

    @classmethod
    def split(cls, n_tokens: int, streams: int | None, prime: int,
              segment: int | None = None) -> Layout:
        """The usual split of n tokens over ``streams`` (None: :func:`auto_streams` with
        ``segment``, one stream if that is None too); fewer streams when the tokens after the
        prime do not give each stream one."""
        if streams is None:
            streams = 1 if segment is None else auto_streams(n_tokens, segment)
        streams = max(1, min(streams, n_tokens - prime))
        return cls(even_lengths(n_tokens, streams, prime), prime)

    @property
    def streams(self) -> int:
        return len(self.lengths)

    @property
    def steps(self) -> int:
        """Steps the frame takes: stream 0 starts first and ends last."""
        return self.lengths[0]

    @property
    def starts(self) -> tuple[int, ...]:
        return (0,) + (self.prime,) * (len(self.lengths) - 1)

    @property
    def even(self) -> bool:
        """Whether this is the usual split of its total (stored as two numbers)."""
        try:
            return even_lengths(sum(self.lengths), self.streams, self.prime) == self.lengths
        except ValueError:
            return False

    def active(self, t: int) -> int:
        """Number of streams that code a token at step t (a prefix of the streams)."""
        return sum(1 for s, n in zip(self.starts, self.lengths) if s <= t < s + n)

    def scatter(self, tokens: np.ndarray) -> np.ndarray:
        """A frame's tokens [N] -> the table [streams, steps]: row i holds stream i's segment
        at the steps it codes them (0 elsewhere)."""
        table = np.zeros((self.streams, self.steps), dtype=np.int64)
        at = 0
        for i, (s, n) in enumerate(zip(self.starts, self.lengths)):
            table[i, s : s + n] = tokens[at : at + n]
            at += n
        return table

    def gather(self, table: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`scatter`."""
        return np.concatenate([table[i, s : s + n] for i, (s, n)
                               in enumerate(zip(self.starts, self.lengths))])
