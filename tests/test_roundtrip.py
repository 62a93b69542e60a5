"""Round trips through the Python API with the tiny model: every kind of input comes back."""

from __future__ import annotations

import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmzip
from llmzip.codec.settings import BEST_WINDOW, DEFAULT_WINDOW
from llmzip.format import container as fmt
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

    from llmzip.codec.rangecoder import Decoder, Encoder

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


@pytest.mark.parametrize("V", [2, 50, 256, 257, 1000, 49152])
def test_split_coder_roundtrip_any_vocabulary(V):
    """The split coding round-trips for vocabularies that are and are not a multiple of the
    group size, with peaked, flat and underflowing rows, symbols at both ends included."""
    import numpy as np

    from llmzip.codec.rangecoder import Decoder, Encoder, group_size

    rng = np.random.default_rng(V)
    steps, n = 30, 3
    probs = rng.dirichlet(np.full(V, 0.05), size=(steps, n))
    probs[0, 0] = 1e-300
    probs[0, 0, -1] = 1.0  # all mass on the last id (a partial group's last place)
    probs[1, 1] = 1.0 / V  # flat
    symbols = np.array([[rng.choice(V, p=row / row.sum()) for row in step] for step in probs])
    symbols[0, 0], symbols[1, 1], symbols[2, 2] = V - 1, 0, V - 1  # both ends, one unlikely
    enc = Encoder(split=True)
    for t in range(steps):
        enc.encode(symbols[t], probs[t])
    blob = enc.finish()
    dec = Decoder(blob, split=True)
    assert all((dec.decode(probs[t]) == symbols[t]).all() for t in range(steps))
    assert group_size(V) ** 2 >= V and group_size(V) <= 2 * max(2, int(V ** 0.5) + 1)


def test_split_coder_loses_less_to_the_floor():
    """A certain token in a vocabulary of 151,936: coded in one part it pays the floor,
    V / 2**24 of the mass (0.013 bits a token, 8 bytes over 5,000 tokens); split, almost
    nothing."""
    import numpy as np

    from llmzip.codec.rangecoder import Decoder, Encoder

    V, n, steps = 151_936, 50, 100
    probs = np.full((n, V), 1e-12)
    probs[:, 7] = 1.0
    symbols = np.full(n, 7)
    sizes = {}
    for split in (False, True):
        enc = Encoder(split=split)
        for _ in range(steps):
            enc.encode(symbols, probs)
        blob = enc.finish()
        sizes[split] = len(blob)
        assert (Decoder(blob, split=split).decode(probs) == 7).all()
    assert sizes[False] - sizes[True] >= 4, sizes


def test_split_decoder_rejects_a_token_past_the_vocabulary():
    import numpy as np

    from llmzip.codec.rangecoder import Decoder, Encoder, _Split

    probs = np.full((1, 300), 1 / 300)  # G = 32: the last group holds ids 288..299 of 320
    parts = _Split(probs)
    enc = Encoder(split=False)  # code the parts by hand, as a forged file would
    enc.encode(np.array([9]), parts.groups)  # the last group
    enc.encode(np.array([31]), parts.within(np.array([9])))  # its place 31: id 319 >= 300
    with pytest.raises(ValueError, match="invalid range-coded data"):
        Decoder(enc.finish(), split=True).decode(probs)


def test_settings_by_input_size_table():
    from llmzip.codec.settings import LEVELS, SMALL_FROM_LEVEL, SMALL_INPUT, Settings

    auto = Settings()
    assert (auto.sized(SMALL_INPUT, 1).window, auto.sized(SMALL_INPUT, 1).streams) == (
        BEST_WINDOW, 1)
    for size, frames in ((SMALL_INPUT + 1, 1), (100, 2), (None, None), (100, None)):
        big = auto.sized(size, frames)
        assert (big.window, big.streams) == (DEFAULT_WINDOW, None), (size, frames)
    assert auto.sized(10, 1, longest=256).window == 256  # never past what the model takes
    assert auto.sized(10, 1, longest=8192).window == BEST_WINDOW
    for level, row in LEVELS.items():  # the ladder: small inputs from SMALL_FROM_LEVEL up
        small = Settings(level=level).sized(SMALL_INPUT, 1)
        one = level >= SMALL_FROM_LEVEL or row.segment is None
        assert small.streams == (1 if one else None), level
        assert small.window == (BEST_WINDOW if one else row.window), level
        big = Settings(level=level).sized(None, None)
        assert (big.window, big.segment) == (row.window, row.segment), level
    with pytest.raises(ValueError, match=r"level must be in 1\.\.9"):
        Settings(level=0)
    told = Settings(streams=3, window=64)
    assert told.sized(10, 1) == told  # what the user said is kept
    assert Settings(window=64).sized(10, 1).streams == 1
    assert Settings(streams=2).sized(10, 1).window == BEST_WINDOW


@pytest.mark.parametrize("size, window, one", [(3000, BEST_WINDOW, True),
                                                (30000, DEFAULT_WINDOW, False)])
def test_small_inputs_get_one_stream_over_a_long_window(tiny_model, size, window, one):
    """(30,000 bytes are ~12,300 of the tiny model's tokens: two of the default's segments.)"""
    data = (CORPUS.encode() * 40)[:size]
    blob = llmzip.compress(data, model=tiny_model, threads=1)
    assert llmzip.decompress(blob, model=tiny_model) == data
    f = io.BytesIO(blob)
    header = fmt.Header.read(f)
    frame = next(fmt.frames(f, header))[1]
    assert header.model.window == window
    assert isinstance(frame, fmt.CodedFrame) and (len(frame.tokens) == 1) == one


def test_each_model_brings_its_mixer(tiny_model, monkeypatch):
    """A model's own mixer settings (model.py: the 1.5B model's preset 7, with a temperature)
    are what its files get, less the components switched off; they round-trip, and a small
    input's header holds them as one preset byte."""
    from llmzip.codec.settings import Settings
    from llmzip.format.mixconfig import PRESET_7, MixConfig
    from llmzip.model import MODELS, load

    assert MODELS["qwen2.5-coder-1.5b"].mix == PRESET_7
    assert MODELS["smollm2-135m"].mix == MixConfig()
    assert Settings(without=frozenset({"recall"})).mixer(PRESET_7) == PRESET_7
    assert not Settings(without=frozenset({"match"})).mixer(PRESET_7).match
    assert Settings(mix=MixConfig()).mixer(PRESET_7) == MixConfig()  # said explicitly: kept
    with pytest.raises(ValueError, match="unknown mixer components"):
        Settings(without=frozenset({"bogus"}))
    monkeypatch.setattr(load(tiny_model), "mix", PRESET_7)
    data = CORPUS.encode()[:700]
    blob = llmzip.compress(data, model=tiny_model, threads=1)
    header = fmt.Header.read(io.BytesIO(blob))
    assert header.model.mix == b"\x07" and blob[6] & fmt.FLAG_PRESET and blob[5] == 11
    assert llmzip.decompress(blob, model=tiny_model) == data
    off = llmzip.compress(data, model=tiny_model, threads=1, without=frozenset({"match"}))
    mix = MixConfig.from_bytes(fmt.Header.read(io.BytesIO(off)).model.mix)
    assert mix == MixConfig(bias_lr=0.125, recall=False, lm_scale=240, match=False)
    assert llmzip.decompress(off, model=tiny_model) == data
    plain = llmzip.compress(data, model=tiny_model, threads=1, mix=MixConfig())
    assert header.lone != fmt.Header.read(io.BytesIO(plain)).lone  # other probabilities coded
