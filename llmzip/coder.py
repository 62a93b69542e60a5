"""Range coding of token streams with constriction.

One queue range coder per frame carries the symbols of all streams interleaved in step order
(step 0: streams 0..n-1, step 1: ...), so each step is one batched constriction call. Both sides
hand constriction float64 probabilities; ``Categorical(perfect=False)`` quantises them to 24-bit
integer frequencies (every symbol > 0) by the same deterministic rule on encode and decode.

constriction reads the probability buffer as C-ordered whatever its strides: a transposed
(Fortran-ordered) array is silently misread. Both sides pass it through ``ascontiguousarray``.
"""

from __future__ import annotations

import constriction
import numpy as np

_FAMILY = constriction.stream.model.Categorical(perfect=False)


class Encoder:
    """Collects symbols; :meth:`finish` returns the compressed bytes."""

    def __init__(self) -> None:
        self._coder = constriction.stream.queue.RangeEncoder()

    def encode(self, symbols: np.ndarray, probabilities: np.ndarray) -> None:
        """symbols [n] int, probabilities [n, V] float64 (rows sum to ~1)."""
        symbols = np.ascontiguousarray(symbols, dtype=np.int32)
        self._coder.encode(symbols, _FAMILY, np.ascontiguousarray(probabilities, np.float64))

    def finish(self) -> bytes:
        return self._coder.get_compressed().astype("<u4").tobytes()


class Decoder:
    """Decodes symbols from bytes made by :class:`Encoder`."""

    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise ValueError("range-coded payload length is not a multiple of 4")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        self._coder = constriction.stream.queue.RangeDecoder(words)

    def decode(self, probabilities: np.ndarray) -> np.ndarray:
        """One symbol per row of probabilities [n, V]; returns int64 [n]. Corrupt data gives
        ValueError (constriction signals it with an AssertionError)."""
        try:
            probabilities = np.ascontiguousarray(probabilities, np.float64)
            return self._coder.decode(_FAMILY, probabilities).astype(np.int64)
        except (AssertionError, RuntimeError, ValueError) as e:
            raise ValueError(f"invalid range-coded data ({e})") from None
