"""The .llmz file format: a header, then frames, then an end record.

All integers are unsigned LEB128 varints unless a width is given; fixed-width fields are
little-endian.

    header  = "LLMZ" version:u8 flags:u8 [model] frame_size:varint
    model   = fingerprint:8 dtype:u8 device:u8 threads:u8 env:4 window:varint sinks:u8
              prime:varint mix_len:u8 mix                 (version 1: no prime field)
    frame   = kind:u8 ...
      stored: kind=1 length:varint crc32:4 bytes[length]
      coded:  kind=2 length:varint crc32:4 streams:varint tokens:varint*streams
              payload_len:varint payload[payload_len]
      even:   kind=3 length:varint crc32:4 streams:varint total_tokens:varint
              payload_len:varint payload[payload_len]      (version 2; tokens per stream
              are even_lengths(total_tokens, streams, prime): the usual split, in 2 bytes
              instead of ~2 per stream)
      end:    kind=0 total_length:varint crc32_total:4

``flags`` bit 0: a model section follows (files of stored frames only may omit it);
bit 1: portable numerics (then, and only then, dtype is "portable"; exactllama.py).
Token counts per stream are non-increasing. In a frame of more than one stream with
``prime`` > 0, stream 0 starts alone and the others join ``prime`` steps later (codec.py), so
stream 0 holds at least ``prime`` more tokens than stream 1. Every frame carries the
CRC-32 of its original bytes, the end record the length and CRC-32 of the whole original, so
corruption is reported with the frame where it happened and truncation is always detected.

Parsing never trusts a length: each is bounded (frame size, stream count, remaining input)
before anything is allocated.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from llmzip.errors import FormatError

MAGIC = b"LLMZ"
FORMAT_VERSION = 2  # bump on any change of the layout or of what the decoder computes
# Version 2 added the model section's prime field (version 1 files decode with prime 0) and
# even frames (kind 3).
MAX_FRAME_SIZE = 1 << 28  # 256 MiB: the largest frame a decoder agrees to hold in memory
MAX_STREAMS = 4096
MAX_WINDOW = 1 << 20
MAX_TOKENS_PER_BYTE = 9  # an escaped byte takes at most 1 + 8 tokens (tokens.py)
FLAG_MODEL = 1
FLAG_PORTABLE = 2

KIND_END, KIND_STORED, KIND_CODED, KIND_EVEN = 0, 1, 2, 3
DTYPES = ("float32", "bfloat16", "float16", "mixed", "portable")  # see numerics.py
DEVICES = ("cpu", "cuda")


def even_lengths(total: int, streams: int, prime: int) -> tuple[int, ...]:
    """Tokens per stream of the usual split: ``total - prime`` tokens in ``streams`` parts
    as equal as possible (the first ones one longer), plus ``prime`` for stream 0 when there
    is more than one stream. ValueError unless every stream gets a token."""
    if streams < 1 or total < streams or (streams > 1 and total - prime < streams):
        raise ValueError("too few tokens for the streams")
    if streams == 1:
        return (total,)
    q, r = divmod(total - prime, streams)
    lengths = [q + 1] * r + [q] * (streams - r)
    lengths[0] += prime
    return tuple(lengths)


def write_varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varint must be >= 0")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class Reader:
    """Reads fields from a binary stream; a short read is a FormatError (truncated)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f

    def bytes(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise FormatError("truncated file (unexpected end of data)")
        return data

    def u8(self) -> int:
        return self.bytes(1)[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.bytes(4))[0]

    def varint(self, limit: int, what: str) -> int:
        value = shift = 0
        while True:
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if value > limit:
                raise FormatError(f"corrupt file: {what} {value} is out of range")
            if not byte & 0x80:
                return value
            shift += 7


@dataclass(frozen=True)
class ModelSection:
    """Everything the decoder must reproduce to compute the same probabilities."""

    fingerprint: bytes  # of weights and tokenizer
    dtype: str
    device: str
    threads: int  # CPU kernels split sums by thread count: part of the numeric environment
    env: bytes  # fingerprint of the numeric environment (4 bytes)
    window: int
    sinks: int
    mix: bytes  # MixConfig.to_bytes()
    prime: int = 0  # steps stream 0 runs alone before the others join (codec.py)


@dataclass(frozen=True)
class Header:
    frame_size: int
    model: ModelSection | None
    portable: bool = False
    version: int = FORMAT_VERSION

    def to_bytes(self) -> bytes:
        flags = (FLAG_MODEL if self.model else 0) | (FLAG_PORTABLE if self.portable else 0)
        out = bytearray(MAGIC + bytes([FORMAT_VERSION, flags]))
        if self.model:
            m = self.model
            if (len(m.fingerprint) != 8 or len(m.env) != 4 or len(m.mix) > 255
                    or not 1 <= m.threads <= 255):
                raise ValueError("bad model section")
            out += m.fingerprint
            out += bytes([DTYPES.index(m.dtype), DEVICES.index(m.device), m.threads])
            out += m.env + write_varint(m.window) + bytes([m.sinks]) + write_varint(m.prime)
            out += bytes([len(m.mix)]) + m.mix
        out += write_varint(self.frame_size)
        return bytes(out)

    @classmethod
    def read(cls, f: BinaryIO) -> Header:
        r = Reader(f)
        magic = f.read(4)
        if magic != MAGIC:
            raise FormatError("not an llmzip file (bad magic bytes)")
        version = r.u8()
        if version > FORMAT_VERSION:
            raise FormatError(
                f"made by a newer llmzip (format version {version}; this one reads up to "
                f"{FORMAT_VERSION}): upgrade llmzip"
            )
        if version < 1:
            raise FormatError(f"corrupt file: format version {version}")
        flags = r.u8()
        if flags & ~(FLAG_MODEL | FLAG_PORTABLE):
            raise FormatError("corrupt file: unknown header flags")
        model = None
        if flags & FLAG_MODEL:
            fingerprint = r.bytes(8)
            dtype, device, threads = r.u8(), r.u8(), r.u8()
            if dtype >= len(DTYPES) or device >= len(DEVICES) or threads == 0:
                raise FormatError("corrupt file: unknown dtype, device or thread count")
            env = r.bytes(4)
            window = r.varint(MAX_WINDOW, "window")
            sinks = r.u8()
            if not 0 <= sinks < window:
                raise FormatError("corrupt file: bad window")
            prime = r.varint(MAX_WINDOW, "prime") if version >= 2 else 0
            mix = r.bytes(r.u8())
            if (DTYPES[dtype] == "portable") != bool(flags & FLAG_PORTABLE):
                raise FormatError("corrupt file: the portable flag and the dtype disagree")
            model = ModelSection(fingerprint, DTYPES[dtype], DEVICES[device], threads, env,
                                 window, sinks, mix, prime)
        frame_size = r.varint(MAX_FRAME_SIZE, "frame size")
        if frame_size == 0:
            raise FormatError("corrupt file: frame size 0")
        return cls(frame_size, model, bool(flags & FLAG_PORTABLE), version)


@dataclass(frozen=True)
class StoredFrame:
    data: bytes
    crc: int


@dataclass(frozen=True)
class CodedFrame:
    length: int  # original bytes
    crc: int
    tokens: tuple[int, ...]  # per stream, non-increasing
    payload: bytes


@dataclass(frozen=True)
class End:
    length: int  # of the whole original
    crc: int


Frame = StoredFrame | CodedFrame | End


def frame_bytes(frame: Frame, prime: int = 0) -> bytes:
    """A frame's bytes; a coded frame whose streams follow the usual split (``prime``: the
    header's) is written as an even frame."""
    if isinstance(frame, End):
        return bytes([KIND_END]) + write_varint(frame.length) + struct.pack("<I", frame.crc)
    if isinstance(frame, StoredFrame):
        return (bytes([KIND_STORED]) + write_varint(len(frame.data))
                + struct.pack("<I", frame.crc) + frame.data)
    total, streams = sum(frame.tokens), len(frame.tokens)
    try:
        even = even_lengths(total, streams, prime) == frame.tokens
    except ValueError:
        even = False
    out = bytearray([KIND_EVEN if even else KIND_CODED]) + write_varint(frame.length)
    out += struct.pack("<I", frame.crc) + write_varint(streams)
    for n in (total,) if even else frame.tokens:
        out += write_varint(n)
    return bytes(out + write_varint(len(frame.payload)) + frame.payload)


def read_frame(f: BinaryIO, header: Header) -> Frame:
    """Read the next frame; every count is checked against the header before allocating."""
    r = Reader(f)
    kind = r.u8()
    if kind == KIND_END:
        return End(r.varint((1 << 63) - 1, "total length"), r.u32())
    if kind == KIND_STORED:
        n = r.varint(header.frame_size, "frame length")
        crc = r.u32()
        return StoredFrame(r.bytes(n), crc)
    if kind not in (KIND_CODED, KIND_EVEN) or header.model is None or (
            kind == KIND_EVEN and header.version < 2):
        raise FormatError(f"corrupt file: unknown frame kind {kind}")
    length = r.varint(header.frame_size, "frame length")
    crc = r.u32()
    streams = r.varint(min(MAX_STREAMS, max(1, length)), "stream count")
    most = MAX_TOKENS_PER_BYTE * length
    if kind == KIND_EVEN:
        try:
            tokens = even_lengths(r.varint(most, "token count"), streams, header.model.prime)
        except ValueError:
            raise FormatError("corrupt file: token counts do not fit the streams") from None
    else:
        tokens = tuple(r.varint(most, "token count") for _ in range(streams))
    if streams == 0 or sum(tokens) > most or sum(tokens) == 0:
        raise FormatError("corrupt file: token counts do not fit the frame length")
    if any(a < b for a, b in zip(tokens, tokens[1:])) or tokens[-1] == 0:
        raise FormatError("corrupt file: stream token counts out of order")
    # ~32 bits/token is far above any real code length, and bounds the allocation.
    payload = r.bytes(r.varint(8 * sum(tokens) + 64, "payload length"))
    return CodedFrame(length, crc, tokens, payload)
