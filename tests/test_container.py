"""Corrupt, truncated and foreign containers fail cleanly with an LlmzipError; the format is
compact and never much bigger than xz on what the model does not help."""

from __future__ import annotations

import io
import lzma
import random
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llmzip
from llmzip.cli.info import describe
from llmzip.errors import ChecksumError, FormatError, LlmzipError, MismatchError
from llmzip.format import container as fmt
from llmzip.format.layout import even_lengths
from llmzip.format.mixconfig import MixConfig
from tests.helpers import CORPUS

TINY = {"window": 16, "sinks": 2, "threads": 1, "streams": 2}
SECTION = fmt.ModelSection(b"12345678", fmt.ENGINE_EXACT, 1024, 4, 128, MixConfig().to_bytes())


@pytest.fixture(scope="module", params=["short", "long"])
def sample(request, tiny_model) -> tuple[bytes, bytes]:
    """One coded frame (the short form) or two (the long form)."""
    data = CORPUS.encode()[:600]
    frame_size = 400 if request.param == "long" else 1 << 20
    blob = llmzip.compress(data, model=tiny_model, frame_size=frame_size, **TINY)
    assert (fmt.Header.read(io.BytesIO(blob)).lone is None) == (request.param == "long")
    return data, blob


def _header_length(blob: bytes) -> int:
    """Bytes up to the header's end: its CRC in the long form, its body in the short form."""
    f = io.BytesIO(blob)
    header = fmt.Header.read(f)
    if header.lone is None:
        return f.tell()
    return len(blob) - len(header.lone) - 4


def _forge(blob: bytes, section: fmt.ModelSection) -> bytes:
    """The file with another model section (every CRC made to fit)."""
    f = io.BytesIO(blob)
    header = fmt.Header.read(f)
    if header.lone is not None:
        frame = next(fmt.frames(f, header))[1]
        return fmt.short_bytes(section, frame)
    forged = fmt.Header(header.frame_size, section)
    return forged.to_bytes() + blob[_header_length(blob):]


def test_short_form_is_10_bytes_smaller(tiny_model):
    """One coded frame: the whole file's CRC stands for the header, payload and end records."""
    data = CORPUS.encode()[:600]
    short = llmzip.compress(data, model=tiny_model, **TINY)
    f = io.BytesIO(short)
    header = fmt.Header.read(f)
    frame = next(fmt.frames(f, header))[1]
    long = (fmt.Header(1 << 20, header.model).to_bytes()
            + fmt.frame_bytes(frame, header.model.prime) + fmt.frame_bytes(fmt.End(None, None)))
    # header CRC 4, frame size 3, kind 1, payload length 1, payload CRC 4, end 1; file CRC 4
    assert len(short) == len(long) - 10
    assert llmzip.decompress(long, model=tiny_model) == data  # both forms are read
    assert "one frame, short form" in describe(io.BytesIO(short), "x")


def test_header_roundtrip():
    primed = fmt.ModelSection(b"12345678", fmt.ENGINE_EXACT, 512, 4, 300, b"\x03")
    split = fmt.ModelSection(b"12345678", fmt.ENGINE_KEYS, 4096, 4, 0, b"\x04", split=True)
    for header in (fmt.Header(1 << 20, SECTION), fmt.Header(77, None),
                   fmt.Header(1 << 20, primed), fmt.Header(1 << 20, split)):
        assert fmt.Header.read(io.BytesIO(header.to_bytes())) == header


def test_new_files_split_tokens_and_say_so(tiny_model):
    """The split flag (8) is written with the model section, costs no byte, and is read."""
    blob = llmzip.compress(CORPUS.encode()[:600], model=tiny_model, **TINY)
    assert blob[6] == fmt.FLAG_MODEL | fmt.FLAG_SHORT | fmt.FLAG_SPLIT  # after magic, version, len
    assert fmt.Header.read(io.BytesIO(blob)).model.split
    assert "tokens in two parts" in describe(io.BytesIO(blob), "x")
    head = fmt.Header(300, None).to_bytes()  # a split flag without a model section: refused
    body = bytearray(head[6:-4])
    body[0] |= fmt.FLAG_SPLIT
    forged = head[:6] + bytes(body)
    forged += struct.pack("<I", zlib.crc32(forged))
    with pytest.raises(FormatError, match="unknown header flags"):
        fmt.Header.read(io.BytesIO(forged))


def _forged(body: bytes) -> bytes:
    """A long-form header around this body, with a correct CRC."""
    head = b"LLMZ" + bytes([fmt.FORMAT_VERSION, len(body)]) + body
    return head + struct.pack("<I", zlib.crc32(head))


def test_preset_settings_take_one_byte():
    """The settings of small inputs and --best are one byte (flag 16); others are written out;
    an unknown preset or a preset flag without a model section is refused."""
    preset = fmt.ModelSection(b"12345678", fmt.ENGINE_EXACT, 4096, 4, 0, b"\x04", split=True)
    other = fmt.ModelSection(b"12345678", fmt.ENGINE_EXACT, 4096, 4, 1, b"\x04", split=True)
    a, b = fmt.Header(300, preset).to_bytes(), fmt.Header(300, other).to_bytes()
    assert a[6] & fmt.FLAG_PRESET and not b[6] & fmt.FLAG_PRESET
    assert len(a) == len(b) - 5
    assert fmt.Header.read(io.BytesIO(a)).model == preset
    unknown = bytearray(a[6:-4])
    unknown[10] = 200  # flags, fingerprint 8, engine, preset
    with pytest.raises(FormatError, match="unknown settings preset 200"):
        fmt.Header.read(io.BytesIO(_forged(bytes(unknown))))
    bare = bytearray(fmt.Header(300, None).to_bytes()[6:-4])
    bare[0] |= fmt.FLAG_PRESET
    with pytest.raises(FormatError, match="unknown header flags"):
        fmt.Header.read(io.BytesIO(_forged(bytes(bare))))


def test_header_and_empty_file_are_compact(tiny_model):
    assert len(fmt.Header(1 << 20, SECTION).to_bytes()) <= 42  # default settings
    assert len(llmzip.compress(b"", model=tiny_model)) <= 20  # zstd: 13


def test_every_truncation_is_detected(tiny_model, sample):
    _, blob = sample
    for cut in range(len(blob)):
        with pytest.raises(FormatError):
            llmzip.decompress(blob[:cut], model=tiny_model, threads=1)


def test_trailing_garbage_is_detected(tiny_model, sample):
    _, blob = sample
    with pytest.raises(FormatError):
        llmzip.decompress(blob + b"x", model=tiny_model)


def test_every_single_byte_corruption_is_detected(tiny_model, sample):
    data, blob = sample
    for pos in range(len(blob)):
        bad = bytearray(blob)
        bad[pos] ^= 0x5A
        try:
            out = llmzip.decompress(bytes(bad), model=tiny_model, threads=1)
        except LlmzipError:
            continue
        # A flip can only go unnoticed where it changes nothing that is decoded.
        assert out == data


def test_a_damaged_header_is_called_damage_not_another_model(tiny_model, sample):
    """Every flipped bit after the magic and version is reported as damage (issue 23.5)."""
    _, blob = sample
    for pos in range(5, _header_length(blob)):
        for bit in (0x01, 0x80):
            bad = bytearray(blob)
            bad[pos] ^= bit
            with pytest.raises(FormatError, match=r"damaged|truncated|corrupt") as e:
                llmzip.decompress(bytes(bad), model=tiny_model, threads=1)
            assert "model" not in str(e.value)


def test_damaged_payload_is_found_before_the_model_runs(sample):
    """A payload CRC names the damage at once: no model is even looked for (issue 23.14)."""
    _, blob = sample
    bad = bytearray(blob)
    bad[_header_length(blob) + 20] ^= 0x10  # inside the (first) coded payload
    with pytest.raises(FormatError, match="damaged"):
        llmzip.decompress(bytes(bad), model="/nonexistent/model")


def test_bad_magic_and_newer_version(tiny_model, sample):
    _, blob = sample
    with pytest.raises(FormatError, match="not an llmzip file"):
        llmzip.decompress(b"GZIP" + blob[4:], model=tiny_model)
    newer = blob[:4] + bytes([fmt.FORMAT_VERSION + 1]) + blob[5:]
    with pytest.raises(FormatError, match="newer llmzip"):
        llmzip.decompress(newer, model=tiny_model)


@pytest.mark.parametrize("byte, value, message", [
    (1, 0x80, "newer llmzip, or corrupt: unknown mixer flags"),  # flags byte
    (1, 0x10, "newer llmzip, or corrupt: the geometric mixture"),
    (0, 3, "newer llmzip, or corrupt: unknown mixer settings version"),
    (2, 0, "corrupt file: bad mixer settings"),  # n-gram order 0
])
def test_mixer_settings_from_a_newer_llmzip(tiny_model, sample, byte, value, message):
    """A header with intact CRC but settings this llmzip does not know."""
    _, blob = sample
    m = fmt.Header.read(io.BytesIO(blob)).model
    mix = bytearray(MixConfig(bias_lr=1.0).to_bytes())  # the long form (not the preset byte)
    mix[byte] = value | (mix[byte] if byte == 1 else 0)
    forged = _forge(blob, fmt.ModelSection(m.fingerprint, m.engine, m.window, m.sinks,
                                           m.prime, bytes(mix)))
    with pytest.raises(FormatError, match=message):
        llmzip.decompress(forged, model=tiny_model)


def test_checksum_mismatch_is_reported(tiny_model):
    noise = random.Random(0).randbytes(1024)
    blob = bytearray(llmzip.compress(noise, model=tiny_model, **TINY))
    assert len(blob) < len(noise) + 30  # stored: incompressible
    blob[-20] ^= 1  # inside the stored bytes of the only frame
    with pytest.raises(ChecksumError, match="frame 1"):
        llmzip.decompress(bytes(blob), model=tiny_model)


def test_other_model_is_refused(other_tiny_model, sample):
    _, blob = sample
    with pytest.raises(MismatchError, match="another model"):
        llmzip.decompress(blob, model=other_tiny_model)


@pytest.mark.parametrize("data", [
    "Alice was beginning to get very tired of sitting by her sister".encode("utf-16"),
    bytes(range(256)) * 8,
    random.Random(1).randbytes(3000),
    b"a" * 5000,
])
def test_never_much_bigger_than_xz(tiny_model, data):
    """What the model does not help is coded by raw LZMA2 or stored (issue 23.10)."""
    blob = llmzip.compress(data, model=tiny_model, **TINY)
    xz = lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
    assert len(blob) <= len(xz) + 8
    assert len(blob) <= len(data) + 25
    assert llmzip.decompress(blob, model=tiny_model) == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_parser_never_crashes_on_garbage(blob):
    for data in (blob, fmt.MAGIC + blob, fmt.MAGIC + bytes([1, 0]) + blob,
                 fmt.Header(1 << 20, SECTION).to_bytes() + blob):
        try:
            f = io.BytesIO(data)
            header = fmt.Header.read(f)
            for _ in fmt.frames(f, header):
                pass
        except FormatError:
            pass


@settings(deadline=None)
@given(total=st.integers(1, 100_000), streams=st.integers(1, 300), prime=st.integers(0, 500))
def test_even_frames_store_two_numbers_and_read_back(total, streams, prime):
    """The usual split is stored as (streams, total); any other split with every count."""
    try:
        lengths = even_lengths(total, streams, prime)
    except ValueError:
        return
    assert sum(lengths) == total and len(lengths) == streams and min(lengths) >= 1
    header = fmt.Header(1 << 28, fmt.ModelSection(b"12345678", fmt.ENGINE_EXACT, 512, 4,
                                                  prime, b""))
    uneven = (lengths[0] + 2, *lengths[1:])  # the usual split only with one stream
    if streams > 1:
        assert even_lengths(total + 2, streams, prime) != uneven
    for tokens, kind in ((lengths, fmt.KIND_EVEN),
                         (uneven, fmt.KIND_EVEN if streams == 1 else fmt.KIND_CODED)):
        frame = fmt.CodedFrame(8 * total + 16, 7, tokens, b"xyz")
        data = fmt.frame_bytes(frame, prime)
        assert data[0] == kind
        assert fmt.read_frame(io.BytesIO(data), header) == frame
    if streams > 3:
        assert len(fmt.frame_bytes(fmt.CodedFrame(8 * total, 7, lengths, b""), prime)) < 24


def test_even_frame_in_a_version_1_file_is_refused():
    section = fmt.ModelSection(b"12345678", fmt.ENGINE_LEGACY, 512, 4, 0, b"")
    frame = fmt.frame_bytes(fmt.CodedFrame(100, 7, (30, 30), b"xyz"))
    assert frame[0] == fmt.KIND_EVEN
    with pytest.raises(FormatError, match="frame kind"):
        fmt.read_frame(io.BytesIO(frame), fmt.Header(1 << 20, section, version=1))
