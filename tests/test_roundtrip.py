"""Round trips through the Python API with the tiny model: every kind of input comes back."""

from __future__ import annotations

import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmzip
from llmzip import container as fmt
from tests.helpers import CORPUS

TINY = {"window": 16, "sinks": 2, "threads": 1}


def roundtrip(data: bytes, model: str, **kw) -> bytes:
    blob = llmzip.compress(data, model=model, **{**TINY, **kw})
    assert llmzip.decompress(blob, model=model) == data
    return blob


@pytest.mark.parametrize(
    "data",
    [b"", b"A", b"\x00", bytes(range(256)), b"\xff\xfe\xc3(\xa0\xa1 invalid utf-8 \xed\xa0\x80",
     "naïve café 中文 🎉\r\n\t".encode(), b"<|endoftext|><esc> special tokens as text"],
    ids=["empty", "one-byte", "nul", "all-256", "invalid-utf8", "unicode", "special-text"],
)
def test_roundtrip_small_inputs(tiny_model, data):
    roundtrip(data, tiny_model)


def test_text_is_coded_and_longer_than_window(tiny_model):
    data = CORPUS.encode() * 2
    blob = roundtrip(data, tiny_model, streams=3)
    header = fmt.Header.read(io.BytesIO(blob))
    f = io.BytesIO(blob)
    fmt.Header.read(f)
    frame = next(fmt.frames(f, header))[1]
    assert isinstance(frame, fmt.CodedFrame)
    assert len(frame.tokens) == 3 and max(frame.tokens) > TINY["window"]
    assert frame.tokens[0] > frame.tokens[-1] or len(set(frame.tokens)) == 1
    assert len(blob) < len(data)


def test_unequal_streams_and_many_frames(tiny_model):
    data = CORPUS.encode()[:1500]
    for streams in (1, 2, 7):
        roundtrip(data, tiny_model, streams=streams, frame_size=400)


def test_random_bytes_are_stored_with_small_overhead(tiny_model):
    data = os.urandom(64 * 1024)
    blob = roundtrip(data, tiny_model)
    assert len(blob) <= len(data) + 64


def test_compression_is_deterministic(tiny_model):
    data = CORPUS.encode()[:800]
    assert llmzip.compress(data, model=tiny_model, **TINY) == llmzip.compress(
        data, model=tiny_model, **TINY)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode)),
       streams=st.integers(1, 5))
def test_roundtrip_property(tiny_model, data, streams):
    roundtrip(data, tiny_model, streams=streams, frame_size=128)


def test_coder_reads_strided_probabilities_correctly():
    """A transposed probability array must code as well as a contiguous copy."""
    import numpy as np

    from llmzip.coder import Decoder, Encoder

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(50, 0.1), size=(40, 3))  # [steps, n, V]
    symbols = np.array([[rng.choice(50, p=row) for row in step] for step in probs])
    ideal = -np.log2(np.take_along_axis(probs, symbols[..., None], -1)).sum()
    enc = Encoder()
    for t in range(40):
        enc.encode(symbols[t], np.asfortranarray(probs[t]))
    blob = enc.finish()
    assert 8 * len(blob) < ideal + 64
    dec = Decoder(blob)
    assert all((dec.decode(np.asfortranarray(probs[t])) == symbols[t]).all() for t in range(40))


def test_settings_by_input_size_table():
    from llmzip.settings import BEST_WINDOW, DEFAULT_WINDOW, SMALL_INPUT, Settings

    auto = Settings()
    assert (auto.sized(SMALL_INPUT, 1).window, auto.sized(SMALL_INPUT, 1).streams) == (
        BEST_WINDOW, 1)
    for size, frames in ((SMALL_INPUT + 1, 1), (100, 2), (None, None), (100, None)):
        big = auto.sized(size, frames)
        assert (big.window, big.streams) == (DEFAULT_WINDOW, None), (size, frames)
    assert auto.sized(10, 1, longest=256).window == 256  # never past what the model takes
    assert auto.sized(10, 1, longest=8192).window == BEST_WINDOW
    told = Settings(streams=3, window=64)
    assert told.sized(10, 1) == told  # what the user said is kept
    assert Settings(window=64).sized(10, 1).streams == 1
    assert Settings(streams=2).sized(10, 1).window == BEST_WINDOW


@pytest.mark.parametrize("size, window, one", [(3000, 4096, True), (17000, 512, False)])
def test_small_inputs_get_one_stream_over_a_long_window(tiny_model, size, window, one):
    data = (CORPUS.encode() * 40)[:size]
    blob = llmzip.compress(data, model=tiny_model, threads=1)
    assert llmzip.decompress(blob, model=tiny_model) == data
    f = io.BytesIO(blob)
    header = fmt.Header.read(f)
    frame = next(fmt.frames(f, header))[1]
    assert header.model.window == window
    assert isinstance(frame, fmt.CodedFrame) and (len(frame.tokens) == 1) == one
