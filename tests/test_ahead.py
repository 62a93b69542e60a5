"""The encoder runs the model over many steps at once (Llama.steps, Predictor's ``ahead``);
the decoder steps one token at a time. Both must give the same bits at every step: across
priming, streams ending, sink moves and every fused / reference path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmzip import model as models
from llmzip.codec import predictor as pred
from llmzip.codec.settings import Coding
from llmzip.format import container as fmt
from llmzip.format.layout import Layout
from llmzip.format.mixconfig import MixConfig
from llmzip.numeric import jit
from tests.helpers import CORPUS


def _run(model, layout: Layout, coding: Coding, table: np.ndarray, ahead: bool) -> list:
    p = pred.Predictor(model, layout, coding, ahead=table if ahead else None)
    out = []
    for t in range(layout.steps):
        probs = p.step()
        out.append((probs.copy(), p.cache.hidden.clone(), p.cache.offset))
        p.observe(table[: len(probs), t])
    return out


@pytest.mark.parametrize("fused_on", [True, False])
@pytest.mark.parametrize("streams,prime,window,rows", [(1, 0, 16, 7), (3, 9, 16, 8),
                                                       (4, 5, 24, 256), (2, 0, 12, 5)])
def test_steps_ahead_give_the_decoders_bits(tiny_model, monkeypatch, fused_on, streams,
                                            prime, window, rows):
    """``rows`` small makes runs of a few steps (and some of one); windows of 12..24 slots
    make the sinks move several times within the text."""
    model = models.load(tiny_model)
    tokens = model.tokens.encode(CORPUS.encode() * 2).astype(np.int64)[:300]
    layout = Layout.split(len(tokens), streams, prime)
    table = layout.scatter(tokens)
    coding = Coding(b"", fmt.ENGINE_EXACT, window, 2, layout.prime, MixConfig())
    monkeypatch.setattr(pred, "AHEAD_ROWS", rows)
    if not fused_on:
        with jit.disabled():
            want = _run(model, layout, coding, table, ahead=False)
            got = _run(model, layout, coding, table, ahead=True)
    else:
        want = _run(model, layout, coding, table, ahead=False)
        got = _run(model, layout, coding, table, ahead=True)
    assert max(o for _, _, o in want) >= 2 * window  # the sinks moved, more than once
    for t, ((p, h, o), (q, g, r)) in enumerate(zip(want, got, strict=True)):
        assert np.array_equal(p, q), t
        assert torch.equal(h, g), t
        assert o == r, t


def test_ahead_refuses_other_tokens(tiny_model):
    """The encoder's logits ran ahead on its table: coding anything else is an error."""
    model = models.load(tiny_model)
    tokens = model.tokens.encode(CORPUS.encode()).astype(np.int64)[:40]
    layout = Layout.split(len(tokens), 2, 0)
    table = layout.scatter(tokens)
    p = pred.Predictor(model, layout, Coding(b"", fmt.ENGINE_EXACT, 16, 2, 0,
                                             MixConfig.lm_only()), ahead=table)
    p.step()
    with pytest.raises(RuntimeError, match="ran ahead"):
        p.observe(table[:, 0] + 1)


def test_steady_stops_before_the_sinks_move(tiny_model):
    model = models.load(tiny_model)
    cache = model.llama.new_cache(1, 8, 2)
    runs = []
    while cache.t < 60:
        k = model.llama.steady(cache, 10)
        model.llama.steps(cache, torch.zeros((k, 1), dtype=torch.int64))
        runs.append(k)
    assert sum(runs) == cache.t and min(runs) >= 1 and 10 in runs and max(runs) == 10
    with pytest.raises(ValueError, match="sinks would move"):
        while True:
            model.llama.steps(cache, torch.zeros((10, 1), dtype=torch.int64))
