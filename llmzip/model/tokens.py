"""bytes <-> token ids, lossless for every byte string.

Text goes through the model's tokenizer; whatever it cannot reproduce exactly (invalid UTF-8,
pieces the tokenizer normalises or drops) is carried by byte-level tokens, one per byte. The
invariant, checked on every call of :meth:`LosslessTokenizer.encode`, is
``codec.decode(codec.encode(data)) == data``.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from llmzip.errors import ModelError

# A lone surrogate is what ``surrogateescape`` decoding makes of a byte that is not valid UTF-8.
_SURROGATE_RUNS = re.compile("[\udc80-\udcff]+")
# Split valid text into pieces of bounded size at line ends, so one odd piece that the
# tokenizer cannot reproduce falls back to byte tokens alone, not the whole frame.
_PIECE_CHARS = 1 << 16


@lru_cache(maxsize=1)
def _byte_level_alphabet() -> dict[str, int]:
    """The GPT-2 byte-level alphabet: printable character -> the byte it stands for."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = {b: b for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = 256 + extra
            extra += 1
    return {chr(c): b for b, c in chars.items()}


def _token_bytes_table(tokenizer: Tokenizer) -> tuple[list[bytes], np.ndarray]:
    """Bytes of every token id, and the id of the single-byte token of each byte value (-1 where
    the vocabulary has none).

    Supports byte-level BPE (GPT-2 style, as SmolLM2 and Llama 3 use) and SentencePiece with
    byte fallback (``<0xNN>`` tokens, ``▁`` for space).
    """
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    size = max(vocab.values()) + 1
    added = {t.content for t in tokenizer.get_added_tokens_decoder().values()}
    alphabet = _byte_level_alphabet()
    model = json.loads(tokenizer.to_str()).get("model", {})
    sentencepiece = model.get("byte_fallback", False)
    table: list[bytes] = [b""] * size
    byte_ids = np.full(256, -1, dtype=np.int64)
    for piece, idx in vocab.items():
        if piece in added:
            data = piece.encode("utf-8")
        elif sentencepiece:
            m = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", piece)
            if m:
                data = bytes([int(m.group(1), 16)])
                byte_ids[data[0]] = idx
            else:
                data = piece.replace("▁", " ").encode("utf-8")
        else:
            try:
                data = bytes(alphabet[c] for c in piece)
            except KeyError:
                data = piece.encode("utf-8")
            if len(data) == 1 and byte_ids[data[0]] < 0:
                byte_ids[data[0]] = idx
        table[idx] = data
    return table, byte_ids


class LosslessTokenizer:
    """Lossless bytes <-> token ids for one tokenizer.

    Invariant: ``decode(encode(x)) == x`` for every byte string ``x`` (verified in ``encode``).
    The encoder and decoder only need the same tokenizer file (it is part of the model
    fingerprint); the tokenization itself never has to be repeated by the decoder.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.table, byte_ids = _token_bytes_table(tokenizer)
        self.vocab_size = len(self.table)
        # Bytes without a token of their own travel as the escape token followed by `digits`
        # single-byte tokens of present bytes, read as base-len(present) digits of the index
        # of the byte among the missing ones.
        missing = np.flatnonzero(byte_ids < 0)
        present = np.flatnonzero(byte_ids >= 0)
        self.escape: int | None = None
        self.digits = 0
        if len(missing):
            added = tokenizer.get_added_tokens_decoder()
            if not added or len(present) < 2:
                raise ModelError(
                    "the tokenizer cannot carry arbitrary bytes (too few byte tokens and no "
                    "special token to escape them with)"
                )
            self.escape = max(added)  # the last special token, a deterministic choice
            self.digits = 1
            while len(present) ** self.digits < len(missing):
                self.digits += 1
            digit_tokens = byte_ids[present].tolist()
            self._digit = {tok: d for d, tok in enumerate(digit_tokens)}
            self._missing = missing.tolist()
        self.byte_tokens: list[list[int]] = []
        for b in range(256):
            if byte_ids[b] >= 0:
                self.byte_tokens.append([int(byte_ids[b])])
                continue
            k, seq = int(np.flatnonzero(missing == b)[0]), []
            for _ in range(self.digits):
                k, d = divmod(k, len(present))
                seq.append(digit_tokens[d])
            self.byte_tokens.append([self.escape, *seq])

    @classmethod
    def from_file(cls, path: str | Path) -> LosslessTokenizer:
        return cls(Tokenizer.from_file(str(path)))

    def _encode_text(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if self.escape not in ids and self.decode(ids) == text.encode("utf-8"):
            return ids
        return self._byte_tokens(text.encode("utf-8"))

    def _byte_tokens(self, data: bytes) -> list[int]:
        out: list[int] = []
        for b in data:
            out.extend(self.byte_tokens[b])
        return out

    def encode(self, data: bytes) -> np.ndarray:
        """Token ids (int64) for ``data``; never lossy."""
        text = data.decode("utf-8", errors="surrogateescape")
        ids: list[int] = []
        pos = 0
        for m in _SURROGATE_RUNS.finditer(text):
            ids.extend(self._encode_valid(text[pos : m.start()]))
            ids.extend(self._byte_tokens(m.group().encode("utf-8", errors="surrogateescape")))
            pos = m.end()
        ids.extend(self._encode_valid(text[pos:]))
        out = np.asarray(ids, dtype=np.int64)
        if self.decode(out) != data:  # pragma: no cover - guarded by the per-piece fallback
            raise AssertionError("tokenization is not lossless; this is a bug in llmzip")
        return out

    def _encode_valid(self, text: str) -> list[int]:
        ids: list[int] = []
        start = 0
        while start < len(text):
            end = min(len(text), start + _PIECE_CHARS)
            if end < len(text):
                cut = text.rfind("\n", start, end)
                end = cut + 1 if cut > start else end
            ids.extend(self._encode_text(text[start:end]))
            start = end
        return ids

    def decode(self, ids: np.ndarray | list[int]) -> bytes:
        """Bytes of a token sequence. Raises ValueError on an id outside the vocabulary."""
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError("token id outside the vocabulary")
        table = self.table
        if self.escape is None or not (arr == self.escape).any():
            return b"".join([table[i] for i in arr.tolist()])
        out = bytearray()
        pending = -1  # digits still to read after an escape token; -1: none
        value = scale = 0
        for i in arr.tolist():
            if pending > 0:
                if i not in self._digit:
                    raise ValueError("escape token followed by a token that is not a byte")
                value += self._digit[i] * scale
                scale *= len(self._digit)
                pending -= 1
                if pending == 0:
                    if value >= len(self._missing):
                        raise ValueError("escaped byte out of range")
                    out.append(self._missing[value])
                    pending = -1
            elif i == self.escape:
                pending, value, scale = self.digits, 0, 1
            else:
                out += table[i]
        if pending > 0:
            raise ValueError("token sequence ends inside an escaped byte")
        return bytes(out)
