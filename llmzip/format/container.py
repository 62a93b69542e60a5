"""The .llmz file format: a header, then frames, then an end record.

All integers are unsigned LEB128 varints unless a width is given; fixed-width fields are
little-endian. Format 3 (written by this llmzip):

    header  = "LLMZ" version:u8 body_len:varint body header_crc32:4
    body    = flags:u8 [model] frame_size:varint
    model   = fingerprint:8 engine:u8 window:varint sinks:u8 prime:varint mix_len:u8 mix
            | fingerprint:8 engine:u8 preset:u8    (flag 16: SETTINGS_PRESETS[preset] gives
                                                    window, sinks, prime and mix)
    frame   = kind:u8 ...   (coded and even frames: kind | 16 where the frame was CRLF text
                             coded as LF text, lineends.py)
      stored: kind=1 length:varint crc32:4 bytes[length]
      coded:  kind=2 length:varint crc32:4 streams:varint tokens:varint*streams
              payload_len:varint payload_crc32:4 payload[payload_len]
      even:   kind=3 length:varint crc32:4 streams:varint total_tokens:varint
              payload_len:varint payload_crc32:4 payload[payload_len]
              (tokens per stream: layout.even_lengths(total_tokens, streams, prime))
      lzma:   kind=4 length:varint crc32:4 payload_len:varint payload_crc32:4 payload
              (raw LZMA2, :func:`lzma_filters` of the frame's length)
      end:    kind=0 total_length:varint crc32_total:4
      end1:   kind=5  (the end of a file of at most one frame, whose own length and CRC
              are the whole file's)

A file of one coded frame is written in the short form (header flag 4), 10-11 bytes smaller:

    short   = "LLMZ" version:u8 body_len:varint body lone payload file_crc32:4
    body    = flags:u8 model              (no frame_size: the one frame's length bounds it)
    lone    = length:varint crc32:4 streams:varint total_tokens:varint
              (tokens per stream as in an even frame; the payload runs to the file's last
              4 bytes; header flag 32: the frame was CRLF text coded as LF text)

``file_crc32`` covers every byte before it: it stands for the header, payload and end
records' CRCs of the long form and is checked, over the whole file, before the body is parsed.

``engine``: 1, the exact integer engine (engine/exact.py); 2, the same with the model's key
exponents (engine/keyscale.py). ``mix``: the mixer settings (settings.MixConfig.to_bytes; the single
bytes 3, 4 and 7 are presets: the defaults of versions 3 and 4, the 1.5B model's settings).
``flags`` bit 0: a model section follows (files of stored and lzma frames only omit it); bit 2:
the short form; bit 3: tokens coded in two parts (codec/rangecoder.py); bit 4: the model section's
settings are a preset (5 bytes fewer: what every small input and --best file gets); bit 5:
the short form's frame was CRLF text coded as LF text (lineends.py). Both line-end marks were
added within format 3: earlier readers of format 3 refuse such files (unknown header flags, or
an unknown frame kind), never misread them.
``header_crc32`` covers every header byte before it and is checked before the body is read,
so a damaged header is reported as damage, not as another model or a newer format. ``crc32``
is that of the frame's original bytes (checked after decoding), ``payload_crc32`` that of its
payload (checked before the model runs, so damage is found at once); the end record holds
the length and CRC-32 of the whole original, so truncation is always detected.

Formats 1 and 2 (llmzip 0.1) are read too: their header has no CRC and a model section of
``fingerprint:8 dtype:u8 device:u8 threads:u8 env:4 window:varint sinks:u8 [prime:varint]
mix_len:u8 mix`` (prime from version 2), flags bit 1 marks ``--portable`` files (dtype
"portable"), and coded frames have no payload CRC. Their portable files decode with the legacy
engine; their machine-bound files (other dtypes) are refused with a clear message.

Parsing never trusts a length: each is bounded (frame size, stream count, remaining input)
before anything is allocated.
"""

from __future__ import annotations

import io
import lzma
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO

from llmzip.errors import FormatError
from llmzip.format.layout import even_lengths

MAGIC = b"LLMZ"
FORMAT_VERSION = 3  # bump on any change of the layout or of what the decoder computes
MAX_FRAME_SIZE = 1 << 28  # 256 MiB: the largest frame a decoder agrees to hold in memory
MAX_STREAMS = 4096
MAX_WINDOW = 1 << 13  # the longest window a file may name: the exact engines' value sums hold it
MAX_PRIME = 1 << 20  # the most steps a header may have stream 0 run alone
MAX_HEADER = 1024  # bytes of a format-3 header body
MAX_SHORT = MAX_FRAME_SIZE + 1024  # bytes after a short form's header body
MAX_TOKENS_PER_BYTE = 9  # an escaped byte takes at most 1 + 8 tokens (model/tokens.py)
FLAG_MODEL = 1
FLAG_PORTABLE = 2  # formats 1-2 only
FLAG_SHORT = 4  # format 3: one coded frame, the short form
FLAG_SPLIT = 8  # format 3: tokens range-coded in two parts (codec/rangecoder.py), with FLAG_MODEL
FLAG_PRESET = 16  # format 3: the model section's settings are one byte of SETTINGS_PRESETS
FLAG_CRLF = 32  # format 3, short form: the frame's CRLF text was coded as LF text
KIND_CRLF = 16  # format 3, or'd into a coded or even frame's kind: the same for that frame

KIND_END, KIND_STORED, KIND_CODED, KIND_EVEN, KIND_LZMA = 0, 1, 2, 3, 4
KIND_END1 = 5
ENGINE_EXACT = 1  # engine/exact.py: format 3's exact integer engine
ENGINE_KEYS = 2  # the same, with the model's key exponents (engine/keyscale.py)
ENGINE_LEGACY = 0x80  # engine/legacy/: how --portable files of formats 1-2 were computed
ENGINE_MACHINE_BOUND = 0x81  # formats 1-2 without --portable: not reproducible here
ENGINES = (ENGINE_EXACT, ENGINE_KEYS)  # what a format-3 header may name
# Frozen one-byte stand-ins for a model section's (window, sinks, prime, mix): byte 1 is what a
# small input or --best gets (one stream, a 4096-token window, 4 sinks, no priming, mixer
# preset 4), byte 2 the same with the 1.5B model's mixer (preset 7). Part of the format: an
# entry is never changed, only added.
SETTINGS_PRESETS = {1: (4096, 4, 0, b"\x04"), 2: (4096, 4, 0, b"\x07")}
_OLD_DTYPES = ("float32", "bfloat16", "float16", "mixed", "portable")


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


def lzma_filters(length: int) -> list[dict]:
    """The raw LZMA2 filter chain of an lzma frame of ``length`` original bytes (preset 9e,
    the dictionary no larger than the frame needs)."""
    dict_size = max(1 << 12, min(1 << 26, 1 << max(0, length - 1).bit_length()))
    return [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME,
             "dict_size": dict_size}]


def lzma_pack(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=lzma_filters(len(data)))


def lzma_unpack(payload: bytes, length: int) -> bytes:
    """The original bytes of an lzma frame; FormatError if the payload does not decode to
    exactly ``length`` bytes (never more is produced than that, whatever the payload)."""
    d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=lzma_filters(length))
    try:
        data = d.decompress(payload, max_length=length + 1)
    except lzma.LZMAError as e:
        raise FormatError(f"corrupt lzma frame ({e})") from None
    if len(data) != length:
        raise FormatError("corrupt lzma frame (wrong length)")
    return data


class Reader:
    """Reads fields from a binary stream; a short read is a FormatError (truncated). Keeps the
    bytes read since the last :meth:`take` when ``record`` is on (for header CRCs)."""

    def __init__(self, f: BinaryIO, record: bool = False) -> None:
        self.f = f
        self.seen = bytearray() if record else None

    def bytes(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise FormatError("truncated file (unexpected end of data)")
        if self.seen is not None:
            self.seen += data
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

    fingerprint: bytes  # of the model: weights and tokenizer (model/convert.py)
    engine: int  # ENGINE_*
    window: int
    sinks: int
    prime: int  # steps stream 0 runs alone before the others join (codec/predictor.py)
    mix: bytes  # mixconfig.MixConfig.to_bytes()
    split: bool = False  # tokens coded as (group, place) (codec/rangecoder.py): FLAG_SPLIT


@dataclass(frozen=True)
class Header:
    frame_size: int
    model: ModelSection | None
    version: int = FORMAT_VERSION
    lone: bytes | None = None  # the short form's frame record and payload (file CRC checked)
    crlf: bool = False  # the short form's FLAG_CRLF

    def to_bytes(self) -> bytes:
        """Format 3's long form only: older formats are read, never written."""
        out = bytearray([_model_flags(self.model)])
        if self.model:
            out += _model_bytes(self.model)
        out += write_varint(self.frame_size)
        head = MAGIC + bytes([FORMAT_VERSION]) + write_varint(len(out)) + out
        return head + struct.pack("<I", zlib.crc32(head))

    @classmethod
    def read(cls, f: BinaryIO) -> Header:
        r = Reader(f, record=True)
        magic = f.read(4)
        if magic != MAGIC:
            raise FormatError("not an llmzip file (bad magic bytes)")
        r.seen += magic
        version = r.u8()
        if version > FORMAT_VERSION:
            raise FormatError(
                f"made by a newer llmzip (format version {version}; this one reads up to "
                f"{FORMAT_VERSION}): upgrade llmzip"
            )
        if version < 1:
            raise FormatError(f"corrupt file: format version {version}")
        if version < 3:
            return _read_old_header(r, version)
        body = r.bytes(r.varint(MAX_HEADER, "header length"))
        if body[:1] and body[0] & FLAG_SHORT:
            # The short form: its one CRC, at its very end, covers the whole member.
            rest = f.read(MAX_SHORT + 5)
            end = _short_end(rest, zlib.crc32(r.seen))
            if end < len(rest):  # another member follows (or bytes that are none)
                if not hasattr(f, "unread"):
                    raise FormatError("corrupt file: trailing data after the end record")
                f.unread(rest[end:])
            header = _parse_header(Reader(io.BytesIO(body)), version)
            return replace(header, lone=rest[: end - 4])
        if r.u32() != zlib.crc32(r.seen[:-4]):
            raise FormatError("corrupt file: the header is damaged (checksum mismatch)")
        return _parse_header(Reader(io.BytesIO(body)), version)


def _short_end(rest: bytes, crc: int) -> int:
    """Where a short-form member ends in ``rest`` (the bytes after its header body; ``crc``:
    the CRC-32 of those before): the first end whose last 4 bytes are the CRC-32 of all before
    them and that is followed by nothing or by another member's magic bytes. FormatError if
    there is none (damage or truncation) within the longest a member can be."""
    at, done, running = rest.find(MAGIC, 4), 0, crc
    while 0 <= at <= MAX_SHORT:
        running, done = zlib.crc32(rest[done:at - 4], running), at - 4  # (one pass over rest)
        if struct.unpack("<I", rest[at - 4:at])[0] == running:
            return at
        at = rest.find(MAGIC, at + 1)
    if len(rest) > MAX_SHORT:
        raise FormatError("corrupt file: longer than a one-frame file can be")
    if len(rest) < 4 or struct.unpack("<I", rest[-4:])[0] != zlib.crc32(rest[:-4], crc):
        raise FormatError("corrupt file: damaged or truncated (checksum mismatch)")
    return len(rest)


class Source:
    """A binary input that takes bytes back (:meth:`unread`), so that members of a file made
    by concatenating .llmz files can be read one after another (a short-form member finds its
    end by its CRC, past which it may have read)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.back = b""

    def read(self, n: int = -1) -> bytes:
        if not self.back:
            return self.f.read(n)
        if n < 0:
            data, self.back = self.back + self.f.read(), b""
            return data
        data, self.back = self.back[:n], self.back[n:]
        if len(data) < n:
            data += self.f.read(n - len(data))
        return data

    def unread(self, data: bytes) -> None:
        self.back = data + self.back

    def another_member(self) -> bool:
        """After a member's end: whether another member follows (its magic bytes); any other
        trailing byte is a FormatError, as gzip, xz and zstd refuse them."""
        head = self.read(len(MAGIC))
        if not head:
            return False
        self.unread(head)
        if head != MAGIC:
            raise FormatError("corrupt file: trailing data after the end record")
        return True


def _preset(m: ModelSection) -> int | None:
    for number, settings in SETTINGS_PRESETS.items():
        if settings == (m.window, m.sinks, m.prime, m.mix):
            return number
    return None


def _model_flags(m: ModelSection | None) -> int:
    if m is None:
        return 0
    return (FLAG_MODEL | (FLAG_SPLIT if m.split else 0)
            | (FLAG_PRESET if _preset(m) is not None else 0))


def _model_bytes(m: ModelSection) -> bytes:
    if len(m.fingerprint) != 8 or len(m.mix) > 255 or m.engine not in ENGINES:
        raise ValueError("bad model section")
    preset = _preset(m)
    if preset is not None:
        return m.fingerprint + bytes([m.engine, preset])
    return (m.fingerprint + bytes([m.engine]) + write_varint(m.window) + bytes([m.sinks])
            + write_varint(m.prime) + bytes([len(m.mix)]) + m.mix)


def short_bytes(model: ModelSection, frame: CodedFrame) -> bytes | None:
    """The whole file of one coded frame in the short form; None where the frame's token
    counts are not the usual split (layout.even_lengths with the model's prime)."""
    total, streams = sum(frame.tokens), len(frame.tokens)
    if not _is_even(frame.tokens, model.prime):
        return None
    body = (bytes([_model_flags(model) | FLAG_SHORT | (FLAG_CRLF if frame.crlf else 0)])
            + _model_bytes(model))
    out = (MAGIC + bytes([FORMAT_VERSION]) + write_varint(len(body)) + body
           + write_varint(frame.length) + struct.pack("<I", frame.crc) + write_varint(streams)
           + write_varint(total) + frame.payload)
    return out + struct.pack("<I", zlib.crc32(out))


def _is_even(tokens: tuple[int, ...], prime: int) -> bool:
    try:
        return even_lengths(sum(tokens), len(tokens), prime) == tokens
    except ValueError:
        return False


def _parse_header(r: Reader, version: int) -> Header:
    """A format-3 header body whose CRC matched (the file's, in the short form)."""
    flags = r.u8()
    short = flags & FLAG_SHORT
    if flags & ~(FLAG_MODEL | FLAG_SHORT | FLAG_SPLIT | FLAG_PRESET | FLAG_CRLF) or (
            flags & (FLAG_SHORT | FLAG_SPLIT | FLAG_PRESET) and not flags & FLAG_MODEL) or (
            flags & FLAG_CRLF and not short):
        raise FormatError("made by a newer llmzip, or corrupt: unknown header flags")
    model = None
    if flags & FLAG_MODEL:
        fingerprint, engine = r.bytes(8), r.u8()
        if engine not in ENGINES:
            raise FormatError(f"made by a newer llmzip, or corrupt: unknown engine {engine}; "
                              "try upgrading llmzip")
        if flags & FLAG_PRESET:
            number = r.u8()
            if number not in SETTINGS_PRESETS:
                raise FormatError(f"made by a newer llmzip, or corrupt: unknown settings "
                                  f"preset {number}; try upgrading llmzip")
            window, sinks, prime, mix = SETTINGS_PRESETS[number]
        else:
            window = r.varint(MAX_WINDOW, "window")
            sinks = r.u8()
            if not 0 <= sinks < window:
                raise FormatError("corrupt file: bad window")
            prime = r.varint(MAX_PRIME, "prime")
            mix = r.bytes(r.u8())
        model = ModelSection(fingerprint, engine, window, sinks, prime, mix,
                             bool(flags & FLAG_SPLIT))
    frame_size = MAX_FRAME_SIZE if short else r.varint(MAX_FRAME_SIZE, "frame size")
    if frame_size == 0:
        raise FormatError("corrupt file: frame size 0")
    if r.f.read(1):
        raise FormatError("made by a newer llmzip, or corrupt: unknown header fields")
    return Header(frame_size, model, version, crlf=bool(flags & FLAG_CRLF))


def _read_old_header(r: Reader, version: int) -> Header:
    """Formats 1 and 2 (no header CRC)."""
    flags = r.u8()
    if flags & ~(FLAG_MODEL | FLAG_PORTABLE):
        raise FormatError("corrupt file: unknown header flags")
    model = None
    if flags & FLAG_MODEL:
        fingerprint = r.bytes(8)
        dtype, device, threads = r.u8(), r.u8(), r.u8()
        if dtype >= len(_OLD_DTYPES) or device >= 2 or threads == 0:
            raise FormatError("corrupt file: unknown dtype, device or thread count")
        r.bytes(4)  # fingerprint of the numeric environment of a machine-bound file
        window = r.varint(MAX_WINDOW, "window")
        sinks = r.u8()
        if not 0 <= sinks < window:
            raise FormatError("corrupt file: bad window")
        prime = r.varint(MAX_PRIME, "prime") if version >= 2 else 0
        mix = r.bytes(r.u8())
        portable = _OLD_DTYPES[dtype] == "portable"
        if portable != bool(flags & FLAG_PORTABLE):
            raise FormatError("corrupt file: the portable flag and the dtype disagree")
        engine = ENGINE_LEGACY if portable else ENGINE_MACHINE_BOUND
        model = ModelSection(fingerprint, engine, window, sinks, prime, mix)
    frame_size = r.varint(MAX_FRAME_SIZE, "frame size")
    if frame_size == 0:
        raise FormatError("corrupt file: frame size 0")
    return Header(frame_size, model, version)


@dataclass(frozen=True)
class StoredFrame:
    data: bytes
    crc: int


@dataclass(frozen=True)
class LzmaFrame:
    length: int  # original bytes
    crc: int
    payload: bytes


@dataclass(frozen=True)
class CodedFrame:
    length: int  # original bytes
    crc: int
    tokens: tuple[int, ...]  # per stream, non-increasing
    payload: bytes
    crlf: bool = False  # the tokens are the LF text of CRLF text (lineends.py)


@dataclass(frozen=True)
class End:
    length: int | None  # of the whole original (None: an end1 record, see frames())
    crc: int | None


Frame = StoredFrame | LzmaFrame | CodedFrame | End


def _payload(payload: bytes) -> bytes:
    return write_varint(len(payload)) + struct.pack("<I", zlib.crc32(payload)) + payload


def frame_bytes(frame: Frame, prime: int = 0) -> bytes:
    """A frame's bytes in format 3. A coded frame whose token counts are the usual split of
    its total (layout.even_lengths with the header's ``prime``) is written as an even frame."""
    if isinstance(frame, End):
        if frame.length is None:
            return bytes([KIND_END1])
        return bytes([KIND_END]) + write_varint(frame.length) + struct.pack("<I", frame.crc)
    if isinstance(frame, StoredFrame):
        return (bytes([KIND_STORED]) + write_varint(len(frame.data))
                + struct.pack("<I", frame.crc) + frame.data)
    if isinstance(frame, LzmaFrame):
        return (bytes([KIND_LZMA]) + write_varint(frame.length) + struct.pack("<I", frame.crc)
                + _payload(frame.payload))
    is_even = _is_even(frame.tokens, prime)
    kind = (KIND_EVEN if is_even else KIND_CODED) | (KIND_CRLF if frame.crlf else 0)
    out = bytearray([kind]) + write_varint(frame.length)
    out += struct.pack("<I", frame.crc) + write_varint(len(frame.tokens))
    for n in (sum(frame.tokens),) if is_even else frame.tokens:
        out += write_varint(n)
    return bytes(out + _payload(frame.payload))


def read_frame(f: BinaryIO, header: Header, index: int | None = None) -> Frame:
    """Read the next frame (number ``index``, for messages); every count is checked against
    the header before allocating. Payload CRCs (format 3) are checked here."""
    r = Reader(f)
    kind = r.u8()
    if kind == KIND_END:
        return End(r.varint((1 << 63) - 1, "total length"), r.u32())
    if kind == KIND_END1 and header.version >= 3:
        return End(None, None)
    if kind == KIND_STORED:
        n = r.varint(header.frame_size, "frame length")
        crc = r.u32()
        return StoredFrame(r.bytes(n), crc)
    new = header.version >= 3
    crlf = bool(new and kind & KIND_CRLF) and (kind & ~KIND_CRLF) in (KIND_CODED, KIND_EVEN)
    if crlf:
        kind &= ~KIND_CRLF
    if kind == KIND_LZMA and new:
        length = r.varint(header.frame_size, "frame length")
        crc = r.u32()
        # lzma never grows data by more than a small fraction; this bounds the allocation.
        return LzmaFrame(length, crc, _read_payload(r, length + length // 8 + 1024, new, index))
    if (kind not in (KIND_CODED, KIND_EVEN) or header.model is None
            or (kind == KIND_EVEN and header.version < 2)):
        raise FormatError(f"corrupt file, or made by a newer llmzip: unknown frame kind {kind}")
    length, crc, tokens = _coded_head(r, header, kind == KIND_EVEN)
    # ~32 bits/token is far above any real code length, and bounds the allocation.
    return CodedFrame(length, crc, tokens, _read_payload(r, 8 * sum(tokens) + 64, new, index),
                      crlf)


def _coded_head(r: Reader, header: Header, even: bool) -> tuple[int, int, tuple[int, ...]]:
    """A coded frame's length, CRC and tokens per stream, checked against the header."""
    assert header.model is not None
    length = r.varint(header.frame_size, "frame length")
    crc = r.u32()
    streams = r.varint(min(MAX_STREAMS, max(1, length)), "stream count")
    most = MAX_TOKENS_PER_BYTE * length
    if even:
        try:
            tokens = tuple(even_lengths(r.varint(most, "token count"), streams,
                                        header.model.prime))
        except ValueError:
            raise FormatError("corrupt file: token counts do not fit the streams") from None
    else:
        tokens = tuple(r.varint(most, "token count") for _ in range(streams))
    if streams == 0 or sum(tokens) > most or sum(tokens) == 0:
        raise FormatError("corrupt file: token counts do not fit the frame length")
    if any(a < b for a, b in zip(tokens, tokens[1:])) or tokens[-1] == 0:
        raise FormatError("corrupt file: stream token counts out of order")
    return length, crc, tokens


def _read_lone(header: Header) -> CodedFrame:
    """The one frame of a short-form file (its bytes were checked by the file's CRC)."""
    assert header.lone is not None
    f = io.BytesIO(header.lone)
    length, crc, tokens = _coded_head(Reader(f), header, True)
    payload = f.read()
    if len(payload) > 8 * sum(tokens) + 64:
        raise FormatError("corrupt file: more compressed data than its tokens can take")
    return CodedFrame(length, crc, tokens, payload, header.crlf)


def _read_payload(r: Reader, most: int, with_crc: bool, index: int | None) -> bytes:
    n = r.varint(most, "payload length")
    crc = r.u32() if with_crc else None
    payload = r.bytes(n)
    if crc is not None and zlib.crc32(payload) != crc:
        where = "a frame's" if index is None else f"frame {index}:"
        raise FormatError(f"corrupt file: {where} compressed data is damaged "
                          "(checksum mismatch)")
    return payload


def frames(f: BinaryIO, header: Header) -> Iterator[tuple[int, Frame]]:
    """(index, frame) for every frame, 1, 2, ..., then the end record (index 0). An end1
    record is accepted after at most one frame. A short-form file yields its one frame."""
    if header.lone is not None:
        yield 1, _read_lone(header)
        yield 0, End(None, None)
        return
    index = 0
    while True:
        frame = read_frame(f, header, index + 1)
        if isinstance(frame, End):
            if frame.length is None and index > 1:
                raise FormatError("corrupt file: a short end record after several frames")
            yield 0, frame
            return
        index += 1
        yield index, frame
