"""CRLF text is coded as LF text: the map is exact, the files say so, and they decode."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

import llmzip
from llmzip.cli.info import describe
from llmzip.codec import stream
from llmzip.errors import ChecksumError
from llmzip.format import container as fmt
from llmzip.format.lineends import to_crlf, to_lf
from tests.helpers import CORPUS

TINY = {"window": 16, "sinks": 2, "threads": 1}
LF_TEXT = CORPUS.encode().replace(b". ", b".\n")[:1200]
CRLF_TEXT = LF_TEXT.replace(b"\n", b"\r\n")


@given(st.lists(st.sampled_from([b"a", b" ", b"\r", b"\n", b"\r\n"]), max_size=40))
def test_to_lf_is_inverted_exactly_where_it_applies(parts):
    data = b"".join(parts)
    text = to_lf(data)
    bare_lf = any(c == 10 and (i == 0 or data[i - 1] != 13) for i, c in enumerate(data))
    assert (text is None) == (bare_lf or b"\n" not in data)
    if text is not None:
        assert to_crlf(text) == data
        assert len(text) == len(data) - data.count(b"\n")


def test_lone_crs_stay():
    assert to_lf(b"a\r\r\nb\rc\r\n") == b"a\r\nb\rc\n"
    assert to_crlf(b"a\r\nb\rc\n") == b"a\r\r\nb\rc\r\n"
    assert to_lf(b"a\r\nb\n") is None and to_lf(b"no line end") is None


def _frames(blob: bytes) -> list[fmt.Frame]:
    f = io.BytesIO(blob)
    header = fmt.Header.read(f)
    return [frame for _, frame in fmt.frames(f, header) if not isinstance(frame, fmt.End)]


@pytest.fixture
def model_coded(monkeypatch):
    monkeypatch.setattr(stream, "TRY_LZMA", False)  # the tiny model loses to lzma


def test_crlf_text_is_the_lf_texts_payload(tiny_model, model_coded):
    """One frame (the short form): the same tokens and payload as the LF text, the CRs back."""
    crlf = llmzip.compress(CRLF_TEXT, model=tiny_model, streams=2, **TINY)
    lf = llmzip.compress(LF_TEXT, model=tiny_model, streams=2, **TINY)
    (a,), (b,) = _frames(crlf), _frames(lf)
    assert a.crlf and not b.crlf and a.payload == b.payload and a.tokens == b.tokens
    assert (a.length, a.crc) != (b.length, b.crc)
    assert crlf[5 + 1] & fmt.FLAG_CRLF and not lf[5 + 1] & fmt.FLAG_CRLF  # the flags byte
    assert llmzip.decompress(crlf, model=tiny_model) == CRLF_TEXT
    assert llmzip.decompress(lf, model=tiny_model) == LF_TEXT


def test_each_frame_decides_for_itself(tiny_model, model_coded):
    """Long form: a frame that starts with the LF of a CRLF cut by the frame boundary has a bare
    LF and is coded as it is; the frames around it as LF text."""
    cut = CRLF_TEXT.index(b"\r\n", 350) + 1
    data = CRLF_TEXT[:cut] + b"\n" + LF_TEXT[:cut - 1] + CRLF_TEXT[:cut]
    blob = llmzip.compress(data, model=tiny_model, streams=2, frame_size=cut, **TINY)
    assert [f.crlf for f in _frames(blob)] == [True, False, True]
    assert llmzip.decompress(blob, model=tiny_model) == data
    listed = describe(io.BytesIO(blob), "x.llmz").splitlines()
    assert [("CRLF line ends coded as LF" in line) for line in listed
            if line.lstrip().startswith("frame ")] == [True, False, True]


def test_a_flipped_crlf_mark_is_a_checksum_error(tiny_model, model_coded):
    blob = bytearray(llmzip.compress(CRLF_TEXT, model=tiny_model, streams=2,
                                     frame_size=600, **TINY))
    header_len = len(fmt.Header(600, _section(bytes(blob))).to_bytes())
    assert blob[header_len] & fmt.KIND_CRLF  # the first frame's kind
    blob[header_len] &= ~fmt.KIND_CRLF
    with pytest.raises(ChecksumError):
        llmzip.decompress(bytes(blob), model=tiny_model)


def _section(blob: bytes) -> fmt.ModelSection:
    header = fmt.Header.read(io.BytesIO(blob))
    assert header.model is not None
    return header.model


def test_the_crlf_flag_needs_the_short_form():
    body = bytes([fmt.FLAG_MODEL | fmt.FLAG_PRESET | fmt.FLAG_CRLF]) + bytes(8) + bytes([1, 1])
    body += b"\x10"  # frame size: a long-form header, which has no line-end flag
    head = fmt.MAGIC + bytes([fmt.FORMAT_VERSION, len(body)]) + body
    with pytest.raises(llmzip.LlmzipError, match="unknown header flags"):
        fmt.Header.read(io.BytesIO(head + struct.pack("<I", zlib.crc32(head))))
