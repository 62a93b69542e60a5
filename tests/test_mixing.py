"""The context-mixing components: valid distributions, adaptation, determinism, settings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from llmzip.bias import Bias
from llmzip.match import Match
from llmzip.mixer import Mixer
from llmzip.ngram import NGram
from llmzip.settings import MixConfig

V = 300
RECALL_ONLY = MixConfig(ngram=False, match=False, bias=False)
# Stand-in hidden states for recall: a fixed vector per previous token (a context "meaning").
STATES = np.random.default_rng(99).normal(size=(V, 12))


def _logits(rng: np.random.Generator, n: int) -> np.ndarray:
    return (2 * rng.normal(size=(n, V))).astype(np.float32)


def _run(config: MixConfig, seq: np.ndarray, lengths: list[int],
         seed: int = 0) -> list[np.ndarray]:
    """Drive a mixer over the token table seq [streams, steps]; return every step's output."""
    rng = np.random.default_rng(seed)
    mixer = Mixer(V, lengths, config)
    outs = []
    prev = np.zeros(len(lengths), dtype=np.int64)
    for t in range(lengths[0]):
        n = sum(1 for length in lengths if length > t)
        p = mixer.mix(torch.from_numpy(_logits(rng, n)), torch.from_numpy(STATES[prev[:n]]))
        outs.append(p.copy())
        mixer.update(seq[:n, t])
        prev[:n] = seq[:n, t]
    return outs


@pytest.mark.parametrize("config", [
    MixConfig(), dataclasses.replace(MixConfig(), shared=False),
    dataclasses.replace(MixConfig(), bias=False, match=False),
    dataclasses.replace(MixConfig(), ngram=False, bias=False),
    dataclasses.replace(MixConfig(), ngram=False, match=False), RECALL_ONLY])
def test_distributions_are_valid(config):
    rng = np.random.default_rng(1)
    lengths = [60, 60, 30]
    seq = np.tile(rng.integers(0, 20, size=(3, 15)), 4)  # repeats: components predict
    for p in _run(config, seq, lengths):
        assert p.dtype == np.float64
        assert np.all(p > 0)
        assert np.allclose(p.sum(axis=1), 1.0, atol=1e-9)


def test_extreme_logits_still_give_positive_probabilities():
    mixer = Mixer(V, [3], MixConfig())
    logits = torch.zeros((1, V))
    logits[0, 0] = 500.0
    logits[0, 1] = -500.0
    p = mixer.mix(logits, torch.from_numpy(STATES[:1]))
    assert np.all(p > 0) and abs(p.sum() - 1) < 1e-9


def test_all_off_is_the_softmax_in_steps_of_1_256_nat():
    """The LM alone: the softmax of the logits rounded to 1/256 nat (the frequency table),
    within 0.2% of the exact softmax, and positive down to 2**-32 of the top."""
    rng = np.random.default_rng(2)
    logits = _logits(rng, 4)
    logits[0, 7] = -60.0
    mixer = Mixer(V, [5] * 4, MixConfig.lm_only())
    p = mixer.mix(torch.from_numpy(logits))
    x = logits.astype(np.float64)
    ref = np.exp(x - x.max(axis=1, keepdims=True))
    ref /= ref.sum(axis=1, keepdims=True)
    big = ref > 1e-8
    assert np.allclose(p[big], ref[big], rtol=3e-3, atol=0)
    assert np.all(p > 0) and np.allclose(p.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("config", [MixConfig(), RECALL_ONLY], ids=["all", "recall"])
def test_mixer_learns_a_repeated_sequence(config):
    """On a phrase seen before, the mixed probability of the right token rises far above the
    (uninformative) LM's."""
    rng = np.random.default_rng(3)
    phrase = rng.integers(0, V, size=40)
    seq = np.tile(phrase, 6)[None, :]
    outs = _run(config, seq, [seq.shape[1]])
    last = [outs[t][0, seq[0, t]] for t in range(len(outs) - 40, len(outs))]
    first = [outs[t][0, seq[0, t]] for t in range(40)]
    assert np.mean(last) > 0.5 > 10 * np.mean(first)


def test_ngram_counts_followers():
    ngram = NGram(1, 2, bits=12)
    for tok in [5, 6, 7, 5, 6, 7, 5, 6]:
        ngram.update(np.array([tok]))
    tok, cnt = ngram.predict(1)  # context (5, 6): order 1 is "6", order 2 is "5 6"
    for order in (0, 1):
        seen = dict(zip(tok[0, order][cnt[0, order] > 0], cnt[0, order][cnt[0, order] > 0]))
        assert seen == {7: 2}


def test_ngram_same_row_in_one_step_loses_no_count():
    ngram = NGram(3, 1, bits=12)
    ngram.update(np.array([1, 1, 1]))  # all three streams now have context "1"
    ngram.update(np.array([2, 2, 3]))
    ngram.update(np.array([1, 1, 1]))
    tok, cnt = ngram.predict(3)
    seen = dict(zip(tok[0, 0][cnt[0, 0] > 0], cnt[0, 0][cnt[0, 0] > 0]))
    assert seen == {2: 2, 3: 1}


def test_ngram_unshared_streams_do_not_see_each_other():
    ngram = NGram(2, 1, bits=12, shared=False)
    ngram.update(np.array([1, 4]))
    ngram.update(np.array([2, 4]))
    ngram.update(np.array([1, 1]))
    tok, cnt = ngram.predict(2)
    assert cnt[0].sum() == 1 and 2 in tok[0, 0][cnt[0, 0] > 0]
    assert cnt[1].sum() == 0


def test_match_follows_a_repeat_and_drops_on_a_miss():
    match = Match([100], min_len=3)
    phrase = [5, 6, 7, 8, 9, 10]
    for tok in phrase + phrase[:4]:
        match.update(np.array([tok]))
    token, length = match.predict(1)
    assert token[0] == 9 and length[0] >= 4
    match.update(np.array([42]))  # wrong: the match is dropped
    token, length = match.predict(1)
    assert token[0] == -1 and length[0] == 0


def test_match_across_streams_only_when_shared():
    for shared, expected in ((True, 5), (False, -1)):
        match = Match([10, 10], min_len=3, shared=shared)
        for t, tok in enumerate([1, 2, 3, 4, 5]):
            match.update(np.array([tok, 9 if t < 1 else tok - 1]))  # stream 1 lags by one
        token, _ = match.predict(2)
        assert token[1] == expected


def _step_bias(bias: Bias, logits: torch.Tensor, tokens: list[int]) -> None:
    """One bias update from the LM frequencies of ``logits`` (+ b)."""
    from llmzip.mixer import lm_frequencies

    f = lm_frequencies(bias.apply(logits))
    n = len(tokens)
    bias.update(f, f.sum(dim=1, keepdim=True), torch.tensor(tokens),
                torch.ones(n, dtype=torch.float64))


@pytest.mark.parametrize("adaptive", [False, True], ids=["sgd", "adagrad"])
def test_bias_moves_towards_observed_token(adaptive):
    bias = Bias(V, MixConfig(bias_lr=1.0, bias_adaptive=adaptive), 1)
    logits = torch.zeros((1, V))
    for _ in range(5):
        _step_bias(bias, logits, [9])
    p = torch.softmax(bias.apply(logits)[0].double(), 0)
    assert p[9] > 5 / V and int(torch.argmax(p)) == 9


@pytest.mark.parametrize("shared", [True, False])
def test_adagrad_bias_steps_shrink_as_a_token_recurs(shared):
    """AdaGrad: each occurrence of token 9 moves its bias less than the one before, and the
    first step is about lr (g / sqrt(eps + g^2) with |g| ~ 1); a token never seen sinks."""
    n = 1 if shared else 2
    bias = Bias(V, MixConfig(bias_lr=0.5, shared=shared), n)
    moves, before = [], 0.0
    for _ in range(4):
        _step_bias(bias, torch.zeros((n, V)) - bias.apply(torch.zeros((n, V))), [9] * n)
        b = bias.b if shared else bias.b[0]
        moves.append(float(b[9]) - before)
        before = float(b[9])
    g = 1 - 1 / V
    assert moves[0] == pytest.approx(0.5 * g / np.sqrt(0.25 + g * g), rel=1e-3)
    assert all(a > c > 0 for a, c in zip(moves, moves[1:]))
    assert float((bias.b if shared else bias.b[0])[3]) < 0


@pytest.mark.parametrize("per_token", [True, False])
def test_shared_bias_step_is_per_token_or_per_step(per_token):
    """per_token: 4 streams seeing the same token move b 4x as far as one stream does;
    otherwise (files made before the flag) as far: the step is their mean."""
    moved = []
    for n in (1, 4):
        bias = Bias(V, MixConfig(bias_lr=0.0078125, bias_sum=per_token, bias_adaptive=False), n)
        _step_bias(bias, torch.zeros((n, V)), [9] * n)
        moved.append(float(bias.b[9]))
    assert moved[0] > 0
    assert moved[1] == pytest.approx(moved[0] * (4 if per_token else 1), rel=1e-6)


def test_shared_bias_gradient_is_exact_in_any_stream_order():
    """The shared gradient is a sum over streams of integers: permuting the streams gives
    the same bits (a float sum would not, in general)."""
    rng = np.random.default_rng(8)
    logits = torch.from_numpy((3 * rng.normal(size=(6, V))).astype(np.float32))
    perm = [3, 0, 5, 1, 4, 2]
    tokens = [1, 2, 3, 4, 5, 6]
    a, b = Bias(V, MixConfig(), 6), Bias(V, MixConfig(), 6)
    _step_bias(a, logits, tokens)
    _step_bias(b, logits[perm], [tokens[i] for i in perm])
    assert torch.equal(a.b, b.b) and torch.equal(a.g2, b.g2)


@pytest.mark.parametrize("config", [MixConfig(), dataclasses.replace(MixConfig(), shared=False)])
def test_identical_runs_are_bit_identical_with_streams_dropping_out(config):
    rng = np.random.default_rng(4)
    lengths = [300, 300, 299, 180, 3]
    seq = np.tile(rng.integers(0, 40, size=(5, 30)), 10)
    a = _run(config, seq, lengths, seed=7)
    b = _run(config, seq, lengths, seed=7)
    assert len(a) == 300
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert [len(a[t]) for t in (0, 3, 180, 299)] == [5, 4, 3, 2]


def test_shared_statistics_help_other_streams():
    """Stream 1 repeats what stream 0 said a step earlier: sharing lets it predict that."""
    rng = np.random.default_rng(5)
    base = rng.integers(0, V, size=200)
    seq = np.stack([base, np.concatenate([[0], base[:-1]])])
    cost = {}
    for shared in (True, False):
        outs = _run(dataclasses.replace(MixConfig(), shared=shared), seq, [200, 200])
        cost[shared] = -sum(np.log2(outs[t][1, seq[1, t]]) for t in range(200))
    assert cost[True] < 0.8 * cost[False]


_halves = st.integers(0, 0x7BFF).map(
    lambda bits: float(np.array([bits], dtype=np.uint16).view(np.float16)[0]))


@given(ngram=st.booleans(), match=st.booleans(), bias=st.booleans(), shared=st.booleans(),
       order=st.integers(1, 8), match_min=st.integers(1, 32),
       bits=st.integers(10, 24), bias_lr=_halves, mix_lr=_halves, bias_sum=st.booleans(),
       bias_adaptive=st.booleans(), recall=st.booleans(), recall_bits=st.integers(8, 24),
       theta=_halves)
def test_config_bytes_roundtrip(ngram, match, bias, shared, order, match_min, bits,
                                bias_lr, mix_lr, bias_sum, bias_adaptive, recall, recall_bits,
                                theta):
    config = MixConfig(ngram, match, bias, shared, order, match_min, bits,
                       bias_lr, mix_lr, bias_sum, bias_adaptive, recall,
                       recall_bits if recall else 16, theta if recall else 48.0)
    data = config.to_bytes()
    assert len(data) == (13 if recall else 9)  # without recall: version 1, as before
    assert MixConfig.from_bytes(data) == config


def test_default_config_roundtrip():
    for config in (MixConfig(), MixConfig.lm_only()):
        assert MixConfig.from_bytes(config.to_bytes()) == config


V1 = MixConfig(recall=False).to_bytes()
V2 = MixConfig().to_bytes()


@pytest.mark.parametrize("data", [
    b"", b"\x01", V1 + b"\x00", V1[:-1], V2 + b"\x00", V2[:-1],
    b"\x03" + V1[1:],  # unknown version
    b"\x01\x80" + V1[2:],  # unknown flag
    b"\x01\x1f" + V1[2:],  # the geometric mixture of llmzip 0.1's machine-bound mode
    b"\x01\x0f\x00" + V1[3:],  # n-gram order 0
    b"\x01\x0f\x09" + V1[3:],  # n-gram order 9
    V1[:3] + b"\x00" + V1[4:],  # match length 0
    V1[:4] + b"\x30" + V1[5:],  # table bits 48
    V1[:5] + b"\x00\x7c" + V1[7:],  # lr = inf
    V1[:5] + b"\x00\x7e" + V1[7:],  # lr = nan
    V1[:7] + b"\x00\xbc",  # lr = -1
    V2[:9] + b"\x02" + V2[10:],  # unknown flags2
    V2[:9] + b"\x00" + V2[10:],  # version 2 without recall
    V2[:10] + b"\x07" + V2[11:],  # 2**7 recalled states: too few
    V2[:10] + b"\x19" + V2[11:],  # 2**25: too many
    V2[:11] + b"\x00\x7e",  # theta = nan
    b"\x01" + V2[1:],  # version 1 with version 2's length
])
def test_bad_config_bytes_are_rejected(data):
    with pytest.raises(ValueError):
        MixConfig.from_bytes(data)


def test_info_describes_mixer_settings_or_shows_unreadable_bytes():
    from llmzip.listing import _mixer

    assert _mixer(MixConfig().to_bytes()) == MixConfig().describe()
    assert "AdaGrad lr 0.5 per token" in MixConfig().describe()
    old = MixConfig(bias_lr=1.5, bias_sum=False, bias_adaptive=False)
    assert "bias SGD lr 1.5 per step" in old.describe()
    assert _mixer(b"\x09\x00") == "unreadable settings 0900"


def test_unrepresentable_config_is_rejected():
    with pytest.raises(ValueError):
        MixConfig(bias_lr=0.1)  # not a float16 value: the decoder would get another one
    with pytest.raises(ValueError):
        MixConfig(ngram_order=0)
