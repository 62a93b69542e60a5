"""The context-mixing components: valid distributions, adaptation, determinism, settings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from llmzip.format.mixconfig import PRESET_3, PRESET_4, PRESET_7, MixConfig
from llmzip.mixing.mixer import Mixer

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
       theta=_halves, warm=st.booleans(), scale=st.sampled_from([256, 240, 64, 1024, 300]))
def test_config_bytes_roundtrip(ngram, match, bias, shared, order, match_min, bits,
                                bias_lr, mix_lr, bias_sum, bias_adaptive, recall, recall_bits,
                                theta, warm, scale):
    config = MixConfig(ngram, match, bias, shared, order, match_min, bits,
                       bias_lr, mix_lr, bias_sum, bias_adaptive, recall,
                       recall_bits if recall else 16, theta if recall else 48.0, warm, scale)
    data = config.to_bytes()
    # without recall or warm start: version 1, as before; a temperature: version 6; the
    # presets: one byte
    size = 15 if scale != 256 else 13 if recall or warm else 9
    assert len(data) == (1 if config in (PRESET_3, PRESET_4, PRESET_7) else size)
    assert MixConfig.from_bytes(data) == config


def test_default_config_roundtrip():
    for config in (MixConfig(), MixConfig.lm_only()):
        assert MixConfig.from_bytes(config.to_bytes()) == config


V1 = MixConfig(recall=False, warm=False).to_bytes()
V2 = MixConfig(bias_lr=1.0, warm=False).to_bytes()
V5 = MixConfig(bias_lr=1.0).to_bytes()
V6 = MixConfig(lm_scale=300).to_bytes()


def test_the_defaults_are_one_byte_and_that_byte_is_frozen():
    """Versions 3 and 4: the byte 3 means PRESET_3 forever, the byte 4 PRESET_4 (a default
    may change, the bytes may not)."""
    assert MixConfig().to_bytes() == b"\x04" and MixConfig.from_bytes(b"\x04") == PRESET_4
    assert MixConfig.from_bytes(b"\x03") == PRESET_3 == MixConfig(warm=False)
    assert MixConfig(True, True, True, True, 4, 6, 20, 0.5, 0.25, True, True, True,
                     16, 48.0, False) == PRESET_3
    assert MixConfig(True, True, True, True, 4, 6, 20, 0.5, 0.25, True, True, True,
                     16, 48.0, True) == PRESET_4
    assert len(V2) == 13 and MixConfig.from_bytes(V2) == MixConfig(bias_lr=1.0, warm=False)
    assert V5[0] == 5 and MixConfig.from_bytes(V5) == MixConfig(bias_lr=1.0)
    assert MixConfig.from_bytes(MixConfig(recall=False).to_bytes()) == MixConfig(recall=False)
    # byte 7: the 1.5B model's mixer (model.py), frozen like the others
    assert PRESET_7.to_bytes() == b"\x07" and MixConfig.from_bytes(b"\x07") == PRESET_7
    assert MixConfig(bias_lr=0.125, recall=False, lm_scale=240) == PRESET_7
    assert V6[0] == 6 and len(V6) == 15 and MixConfig.from_bytes(V6) == MixConfig(lm_scale=300)
    assert "LM temperature 0.8533" in MixConfig(lm_scale=300).describe()


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
    V5[:9] + b"\x07" + V5[10:],  # unknown flags2 of version 5
    V5[:9] + b"\x01" + V5[10:],  # version 5 without the warm start
    b"\x06" + V5[1:],  # version 6 with version 5's length
    b"\x08" + V6[1:],  # unknown version
    V6[:-2] + b"\x00\x01",  # version 6 at temperature 1
    V6[:-2] + b"\x3f\x00",  # lm_scale 63
    V6[:-2] + b"\x01\x04",  # lm_scale 1025
])
def test_bad_config_bytes_are_rejected(data):
    with pytest.raises(ValueError):
        MixConfig.from_bytes(data)


def test_info_describes_mixer_settings_or_shows_unreadable_bytes():
    from llmzip.cli.info import _mixer

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


def test_warm_start_rows_follow_the_components():
    """Each component starts from its own kind's row: n-gram orders (beyond 4: order 4's),
    recall, match; the flat start is -3 on the own-confidence entries, 0 elsewhere."""
    from llmzip.mixing import mixer

    table = mixer._START
    W = Mixer(320, [10], MixConfig(ngram_order=6)).W
    assert np.array_equal(W, table[[0, 1, 2, 3, 3, 3, 4, 5]])
    W = Mixer(320, [10], MixConfig(recall=False, ngram=False)).W
    assert np.array_equal(W, table[[5]])
    flat = Mixer(320, [10], MixConfig(warm=False)).W
    assert (flat[:, :21] == -3).all() and (flat[:, 21:] == 0).all()
    assert np.array_equal(table * 64, np.round(table * 64))  # exact multiples of 1/64
