"""Forged .llmz files that claim far more work than their bytes can hold (decompression bombs),
built from a real file's model section so that they pass every check but the work bound:
tests/test_bombs.py decodes each, benchmarks/bombs.py times them."""

from __future__ import annotations

import io
import random
from dataclasses import replace

from llmzip.format import container as fmt

HUGE = 1 << 28  # the largest frame the format allows (container.MAX_FRAME_SIZE)


def section_of(blob: bytes) -> fmt.ModelSection:
    """The model section of a model-coded file."""
    header = fmt.Header.read(io.BytesIO(blob))
    assert header.model is not None, "not a model-coded file"
    return header.model


def _long(section: fmt.ModelSection, frame: fmt.CodedFrame, frame_size: int = HUGE) -> bytes:
    return (fmt.Header(frame_size, section).to_bytes() + fmt.frame_bytes(frame, section.prime)
            + fmt.frame_bytes(fmt.End(None, None)))


def _frame(length: int, tokens: tuple[int, ...], payload: bytes) -> fmt.CodedFrame:
    return fmt.CodedFrame(length, 0, tokens, payload)


def forgeries(blob: bytes) -> dict[str, bytes]:
    """name -> forged file, from ``blob`` (a real file of one coded frame, short form)."""
    section = section_of(blob)
    lone = fmt.Header.read(io.BytesIO(blob)).lone
    assert lone is not None, "need a short-form file"
    payload16 = random.Random(16).randbytes(16)
    most = int(0.75 * HUGE)  # codec.BINARY_TOKENS_PER_BYTE: the most a frame may declare
    out = {
        # issue 42's: 51 bytes, one frame of 2**28 bytes and 201,326,592 tokens, 16 bytes
        "short-form-huge-count": fmt.short_bytes(section, _frame(HUGE, (most,), payload16)),
        "long-form-huge-count": _long(section, _frame(HUGE, (most,), payload16)),
        "many-streams": _long(section, _frame(HUGE, (most // 4096,) * 4096, payload16)),
        "huge-window": _long(replace(section, window=1 << 20, sinks=4, prime=0),
                             _frame(4000, (1000,), payload16)),
        "many-streams-long-window": _long(replace(section, window=4096, sinks=4, prime=0),
                                          _frame(HUGE, (most // 4096,) * 4096,
                                                 random.Random(4096).randbytes(4096))),
        "random-payload": _long(section, _frame(40000, (10000,), random.Random(64).randbytes(64))),
    }
    # A real payload with a count past its tokens: decoding reads zeros past its end.
    r = fmt.Reader(io.BytesIO(lone))
    length, _crc = r.varint(HUGE, "length"), r.u32()
    streams, total = r.varint(4096, "streams"), r.varint(9 * HUGE, "tokens")
    payload = r.f.read()
    assert streams == 1
    out["real-payload-more-tokens"] = fmt.short_bytes(
        section, _frame(40 * length, (total + 10 * length,), payload))
    return out
