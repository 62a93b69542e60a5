"""Corrupt, truncated and foreign containers fail cleanly with an LlmzipError."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llmzip
from llmzip import container as fmt
from llmzip import numerics
from llmzip.errors import ChecksumError, FormatError, LlmzipError, MismatchError
from tests.helpers import CORPUS

TINY = {"window": 16, "sinks": 2, "threads": 1, "streams": 2}


@pytest.fixture(scope="module")
def sample(tiny_model) -> tuple[bytes, bytes]:
    data = CORPUS.encode()[:600]
    return data, llmzip.compress(data, model=tiny_model, **TINY)


def test_header_roundtrip():
    section = fmt.ModelSection(b"12345678", "float32", "cpu", 2, b"abcd", 1024, 4, b"\x01\x02")
    primed = fmt.ModelSection(b"12345678", "float32", "cpu", 2, b"abcd", 512, 4, b"\x03", 300)
    for header in (fmt.Header(1 << 20, section), fmt.Header(77, None, portable=True),
                   fmt.Header(1 << 20, primed)):
        assert fmt.Header.read(io.BytesIO(header.to_bytes())) == header


def test_header_is_compact():
    assert len(fmt.Header(1 << 20, fmt.ModelSection(b"12345678", "float32", "cpu", 2, b"abcd",
                                                   1024, 4, b"")).to_bytes()) < 40


def test_every_truncation_is_detected(tiny_model, sample):
    _, blob = sample
    for cut in range(len(blob)):
        with pytest.raises(FormatError):
            llmzip.decompress(blob[:cut], model=tiny_model)


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
            out = llmzip.decompress(bytes(bad), model=tiny_model)
        except LlmzipError:
            continue
        # A flip can only go unnoticed where it changes nothing that is decoded.
        assert out == data


def test_bad_magic_and_newer_version(tiny_model, sample):
    _, blob = sample
    with pytest.raises(FormatError, match="not an llmzip file"):
        llmzip.decompress(b"GZIP" + blob[4:], model=tiny_model)
    newer = blob[:4] + bytes([fmt.FORMAT_VERSION + 1]) + blob[5:]
    with pytest.raises(FormatError, match="newer llmzip"):
        llmzip.decompress(newer, model=tiny_model)


@pytest.mark.parametrize("byte, value, message", [
    (1, 0x80, "newer llmzip, or corrupt: unknown mixer flags"),  # flags byte
    (0, 3, "newer llmzip, or corrupt: unknown mixer settings version"),
    (2, 0, "corrupt file: bad mixer settings"),  # n-gram order 0
])
def test_mixer_settings_from_a_newer_llmzip(tiny_model, sample, byte, value, message):
    _, blob = sample
    mix = fmt.Header.read(io.BytesIO(blob)).model.mix
    at = blob.index(bytes([len(mix)]) + mix) + 1
    forged = bytearray(blob)
    forged[at + byte] = value | (forged[at + byte] if byte == 1 else 0)
    with pytest.raises(FormatError, match=message):
        llmzip.decompress(bytes(forged), model=tiny_model)


def test_checksum_mismatch_is_reported(tiny_model):
    blob = bytearray(llmzip.compress(bytes(range(256)) * 4, model=tiny_model, **TINY))
    blob[-20] ^= 1  # inside the stored bytes of the only frame
    with pytest.raises(ChecksumError, match="frame 1"):
        llmzip.decompress(bytes(blob), model=tiny_model)


def test_other_model_is_refused(other_tiny_model, sample):
    _, blob = sample
    with pytest.raises(MismatchError, match="another model"):
        llmzip.decompress(blob, model=other_tiny_model)


def test_other_numeric_environment_is_refused(tiny_model, sample, monkeypatch):
    data, blob = sample
    monkeypatch.setattr(numerics.Numerics, "describe", lambda self: "some other machine")
    with pytest.raises(MismatchError, match=r"numeric environment.*here: some other machine"):
        llmzip.decompress(blob, model=tiny_model)
    assert llmzip.decompress(blob, model=tiny_model, check_env=False) == data


def test_foreign_environment_failure_is_not_called_corruption(tiny_model, sample, monkeypatch):
    """With --ignore-env a file from another machine may not verify; the message says why
    (measured: files made on an AVX2 host fail their checksum on an AVX-512 one)."""
    _, blob = sample
    bad = bytearray(blob)
    bad[-20] ^= 0x10  # inside the coded payload: what a different computation would decode
    with pytest.raises(ChecksumError, match="corrupt"):
        llmzip.decompress(bytes(bad), model=tiny_model)
    monkeypatch.setattr(numerics.Numerics, "describe", lambda self: "some other machine")
    with pytest.raises(ChecksumError, match=r"frame 1 did not decode: this machine \(some "
                       r"other machine\) computes other probabilities.*--portable") as e:
        llmzip.decompress(bytes(bad), model=tiny_model, check_env=False)
    assert "corrupt" not in str(e.value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_parser_never_crashes_on_garbage(blob):
    for data in (blob, fmt.MAGIC + blob, fmt.MAGIC + bytes([1, 0]) + blob):
        try:
            header = fmt.Header.read(io.BytesIO(data))
            f = io.BytesIO(data)
            fmt.Header.read(f)
            while not isinstance(fmt.read_frame(f, header), fmt.End):
                pass
        except FormatError:
            pass


@given(total=st.integers(1, 100_000), streams=st.integers(1, 300), prime=st.integers(0, 500))
def test_even_frames_store_two_numbers_and_read_back(total, streams, prime):
    """The usual split is stored as (streams, total); any other split with every count."""
    try:
        lengths = fmt.even_lengths(total, streams, prime)
    except ValueError:
        return
    assert sum(lengths) == total and len(lengths) == streams and min(lengths) >= 1
    section = fmt.ModelSection(b"12345678", "float32", "cpu", 1, b"abcd", 512, 4, b"", prime)
    header = fmt.Header(1 << 28, section)
    uneven = (lengths[0] + 2, *lengths[1:])  # the usual split only with one stream
    if streams > 1:
        assert fmt.even_lengths(total + 2, streams, prime) != uneven
    for tokens, kind in ((lengths, fmt.KIND_EVEN),
                         (uneven, fmt.KIND_EVEN if streams == 1 else fmt.KIND_CODED)):
        frame = fmt.CodedFrame(8 * total + 16, 7, tokens, b"xyz")
        data = fmt.frame_bytes(frame, prime)
        assert data[0] == kind
        assert fmt.read_frame(io.BytesIO(data), header) == frame
    if streams > 3:
        assert len(fmt.frame_bytes(fmt.CodedFrame(8 * total, 7, lengths, b""), prime)) < 20


def test_even_frame_in_a_version_1_file_is_refused():
    section = fmt.ModelSection(b"12345678", "float32", "cpu", 1, b"abcd", 512, 4, b"")
    frame = fmt.frame_bytes(fmt.CodedFrame(100, 7, (30, 30), b"xyz"))
    assert frame[0] == fmt.KIND_EVEN
    with pytest.raises(FormatError, match="frame kind"):
        fmt.read_frame(io.BytesIO(frame), fmt.Header(1 << 20, section, version=1))
