"""Priming: stream 0 codes its first tokens alone, then the other streams join from a copy of
its context. Layout, round trips, what a joining stream sees, and the format's checks."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import llmzip
from llmzip import model as models
from llmzip.codec.predictor import Predictor
from llmzip.codec.settings import Coding
from llmzip.errors import FormatError
from llmzip.format import container as fmt
from llmzip.format.layout import Layout
from llmzip.format.mixconfig import MixConfig
from llmzip.mixing.match import Match
from llmzip.mixing.mixer import Mixer
from tests.helpers import CORPUS

TINY = {"window": 16, "sinks": 2, "threads": 1}


@given(n=st.integers(1, 5000), streams=st.one_of(st.none(), st.integers(1, 70)),
       prime=st.integers(0, 300))
def test_layout_covers_the_tokens_and_streams_end_in_order(n, streams, prime):
    if n <= prime:
        return
    layout = Layout.split(n, streams, prime)  # refuses streams that end out of order
    assert sum(layout.lengths) == n and min(layout.lengths) >= 1
    ends = [s + k for s, k in zip(layout.starts, layout.lengths)]
    assert ends[0] == max(ends)
    if layout.streams > 1:
        assert layout.lengths[0] - prime >= layout.lengths[1] and layout.starts[1] == prime


def test_layout_refuses_streams_that_end_out_of_order():
    with pytest.raises(ValueError):
        Layout((10, 8), prime=4)  # stream 1 would end at step 12, after stream 0
    with pytest.raises(ValueError):
        Layout((10, 0), prime=0)
    assert Layout((12, 8), prime=4).starts == (0, 4)
    assert Layout((3,), prime=99).starts == (0,)  # one stream: nothing to prime


@pytest.mark.parametrize("streams,prime", [(3, 5), (3, 16), (5, 40), (2, 1), (1, 8),
                                           (4, 100_000)])
def test_primed_roundtrip(tiny_model, model_coding, streams, prime):
    """prime 16 fills the window and 40 slides it before the others join; a prime longer
    than the input leaves one stream."""
    data = CORPUS.encode() * 2
    blob = llmzip.compress(data, model=tiny_model, streams=streams, prime=prime, **TINY)
    assert llmzip.decompress(blob, model=tiny_model) == data
    f = io.BytesIO(blob)
    header = fmt.Header.read(f)
    # one stream never waits: its header says prime 0 (the same coding)
    assert header.model.prime == (prime if streams > 1 else 0)
    assert header.version == fmt.FORMAT_VERSION
    frame = next(fmt.frames(f, header))[1]
    assert isinstance(frame, fmt.CodedFrame)
    expected = 1 if prime >= 100_000 else streams
    assert len(frame.tokens) == expected


def test_priming_helps(tiny_model):
    data = CORPUS.encode() * 2
    sizes = {}
    for prime in (0, 12):
        blob = llmzip.compress(data, model=tiny_model, streams=4, prime=prime, **TINY)
        assert llmzip.decompress(blob, model=tiny_model) == data
        sizes[prime] = len(blob)
    assert sizes[12] < sizes[0]


def _coding(prime: int = 0) -> Coding:
    return Coding(b"", fmt.ENGINE_EXACT, 16, 2, prime, MixConfig.lm_only())


def test_joining_stream_sees_the_prefix_as_context(tiny_model):
    """LM alone: a stream that joins after P steps gets the very probabilities of one stream
    fed stream 0's first P - 1 tokens, the join token (a paragraph break) and then its own
    (every step is exact and row by row: the batch does not matter)."""
    model = models.load(tiny_model)
    tokens = model.tokens.encode(CORPUS.encode()).astype(np.int64)
    P = 9
    layout = Layout.split(60 + P, 3, P)  # [29, 20, 20]
    lengths = layout.lengths
    table = layout.scatter(tokens[: 60 + P])
    primed = Predictor(model, layout, _coding(P))
    got = []
    for t in range(lengths[0]):
        probs = primed.step()
        got.append(probs.copy())
        primed.observe(table[: len(probs), t])
    assert [len(p) for p in got[P - 1 : P + 1]] == [1, 3]
    for i in (1, 2):
        alone_tokens = np.concatenate([tokens[: P - 1], [model.join_token],
                                       table[i, P : P + lengths[i]]])
        alone = Predictor(model, Layout((len(alone_tokens),)), _coding())
        for t, y in enumerate(alone_tokens):
            p = alone.step()
            if t >= P:
                assert np.array_equal(p[0], got[t][i]), (i, t)
            alone.observe(np.array([y]))


def test_join_token_is_a_paragraph_break(tiny_model):
    model = models.load(tiny_model)
    assert model.tokens.decode(np.array([model.join_token])) in (b"\n\n", b"\n")


def test_cache_copy_is_exact(tiny_model):
    """After grow(), the copies hold stream 0's keys and values bit for bit."""
    model = models.load(tiny_model)
    cache = model.llama.new_cache(1, 16, 2)
    for tok in (1, 5, 9):
        model.llama.step(cache, torch.tensor([tok]))
    cache.grow(4)
    assert cache.batch == 4
    for i in range(1, 4):
        assert torch.equal(cache.kp[:, i], cache.kp[:, 0])
        assert torch.equal(cache.vp[:, i], cache.vp[:, 0])


def test_match_waits_for_a_joining_streams_own_tokens():
    """Stream 1 joins at step 4. Its first token must not be matched together with the empty
    columns before its start, although stream 0 began with "0 0 7"; three tokens of its own
    are enough."""
    match = Match([10, 5], min_len=3, starts=[0, 4])
    for y in (0, 0, 7, 8):
        match.update(np.array([y]))
    match.update(np.array([1, 7]))
    token, _ = match.predict(2)
    assert token[1] == -1
    for y0, y1 in ((2, 0), (3, 0), (4, 7)):  # stream 1: 7 0 0 7 -> follows stream 0's 0 0 7 8
        match.update(np.array([y0, y1]))
    token, length = match.predict(2)
    assert token[1] == 8 and length[1] == 3


def test_mixer_with_joining_streams_is_deterministic_and_valid():
    rng = np.random.default_rng(3)
    V = 200
    lengths, starts = [120, 80, 79], [0, 20, 20]
    seq = np.tile(rng.integers(0, 30, size=(3, 20)), 6)

    def run() -> list[np.ndarray]:
        mixer = Mixer(V, lengths, MixConfig(), starts)
        logits = np.random.default_rng(1)
        outs = []
        for t in range(lengths[0]):
            n = 1 if t < 20 else sum(1 for a, m in zip(starts, lengths) if a <= t < a + m)
            p = mixer.mix(torch.from_numpy((2 * logits.normal(size=(n, V))).astype(np.float32)),
                          torch.from_numpy(np.eye(V, 16)[seq[:n, max(t - 1, 0)]]))
            assert np.all(p > 0) and np.allclose(p.sum(axis=1), 1.0)
            outs.append(p)
            mixer.update(seq[:n, t])
        return outs

    a, b = run(), run()
    assert [len(p) for p in a[19:22]] == [1, 3, 3] and len(a[-1]) == 1
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_prime_that_does_not_fit_the_frame_is_refused(tiny_model, model_coding):
    data = CORPUS.encode() * 2
    blob = llmzip.compress(data, model=tiny_model, streams=3, prime=5, **TINY)
    f = io.BytesIO(blob)
    header = fmt.Header.read(f)
    frame, end = (item[1] for item in fmt.frames(f, header))  # the short form's one frame
    assert isinstance(frame, fmt.CodedFrame) and header.lone is not None
    too_long = frame.tokens[0] - frame.tokens[1] + 1  # stream 1 would end after stream 0
    forged = fmt.Header(header.frame_size,
                        fmt.ModelSection(**{**header.model.__dict__, "prime": too_long}))
    counts = fmt.frame_bytes(frame)  # every count written out (not the usual split for 0)
    assert counts[0] == fmt.KIND_CODED
    with pytest.raises(FormatError, match="do not fit"):
        llmzip.decompress(forged.to_bytes() + counts + fmt.frame_bytes(end), model=tiny_model)


def test_version_1_header_reads_prime_zero():
    """llmzip 0.1's headers: version 2 has a prime varint after sinks, version 1 has none."""
    mix = MixConfig().to_bytes()
    body = (b"\x01" * 8 + bytes([4, 0, 1]) + b"\x02" * 4 + bytes([16, 2]) + b"%s"
            + bytes([len(mix)]) + mix + bytes([0x80, 0x80, 0x40]))
    v2 = fmt.MAGIC + bytes([2, fmt.FLAG_MODEL | fmt.FLAG_PORTABLE]) + body % b"\x05"
    v1 = fmt.MAGIC + bytes([1, fmt.FLAG_MODEL | fmt.FLAG_PORTABLE]) + body % b""
    for data, version, prime in ((v2, 2, 5), (v1, 1, 0)):
        header = fmt.Header.read(io.BytesIO(data))
        assert header.version == version and header.frame_size == 1 << 20
        assert header.model == fmt.ModelSection(b"\x01" * 8, fmt.ENGINE_LEGACY, 16, 2, prime,
                                                mix)
