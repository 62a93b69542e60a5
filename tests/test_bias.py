"""The online bias head (bias.py): direction, AdaGrad's shrinking steps, the shared step's
scale and its exactness in any stream order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmzip.format.mixconfig import MixConfig
from llmzip.mixing.bias import Bias

V = 300


def _step_bias(bias: Bias, logits: torch.Tensor, tokens: list[int]) -> None:
    """One bias update from the LM frequencies of ``logits`` (+ b)."""
    from llmzip.mixing.mixer import lm_frequencies

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
