"""The decoder's drafted steps (predictor.Drafts): any guesses, right or wrong, give the very
probabilities, hidden states and cache of one step at a time, across ring wraps and sink
moves, and files decode the same with drafting on and off."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import llmzip
from llmzip import model as models
from llmzip.codec import predictor as pred
from llmzip.codec.settings import Coding
from llmzip.format import container as fmt
from llmzip.format.layout import Layout
from llmzip.format.mixconfig import MixConfig
from llmzip.numeric import jit
from tests.helpers import CORPUS


class Oracle(pred.Drafts):
    """Guesses from the true table: ``wrong`` makes every guess from the ``wrong``-th on
    wrong (0: all wrong, None: all right)."""

    def __init__(self, table: np.ndarray, predictor_t, wrong: int | None, vocab: int) -> None:
        super().__init__()
        self.table, self.t, self.wrong, self.vocab = table, predictor_t, wrong, vocab

    def guess(self, n: int, match=None) -> np.ndarray:
        t = self.t()
        k = min(self.most, self.table.shape[1] - t - 1)
        rows = self.table[:n, t: t + k].T.copy()
        if self.wrong is not None:
            rows[self.wrong:] = (rows[self.wrong:] + 1) % self.vocab
        return rows


def _run(model, layout, coding, table, drafts) -> list:
    holder = {}
    if drafts == "off":
        d = pred.Drafts(0)
    elif drafts == "default":
        d = None
    else:
        d = Oracle(table, lambda: holder["p"].t, drafts, model.vocab_size)
    p = holder["p"] = pred.Predictor(model, layout, coding, drafts=d)
    out = []
    for t in range(layout.steps):
        probs = p.step()
        out.append((probs.copy(), p.cache.hidden.clone(), p.cache.offset))
        p.observe(table[: len(probs), t])
    cache = p.cache
    out.append(tuple(getattr(cache, name).clone() for name in ("kp", "vp", "k_scale",
                                                               "v_scale")))
    return out


@pytest.mark.parametrize("fused_on", [True, False])
@pytest.mark.parametrize("drafts", ["default", None, 0, 1, 3])
@pytest.mark.parametrize("streams,prime,window", [(1, 0, 12), (2, 7, 16), (1, 0, 7)])
def test_drafted_steps_give_one_steps_bits(tiny_model, fused_on, drafts, streams, prime,
                                           window):
    model = models.load(tiny_model)
    tokens = model.tokens.encode(CORPUS.encode() * 2).astype(np.int64)[:200]
    layout = Layout.split(len(tokens), streams, prime)
    table = layout.scatter(tokens)
    coding = Coding(b"", fmt.ENGINE_EXACT, window, 2, layout.prime, MixConfig())
    with jit.disabled() if not fused_on else _nothing():
        want = _run(model, layout, coding, table, "off")
        got = _run(model, layout, coding, table, drafts)
    assert max(o for _, _, o in want[:-1]) >= 2 * window  # the sinks moved
    for t, (a, b) in enumerate(zip(want[:-1], got[:-1], strict=True)):
        assert np.array_equal(a[0], b[0]), t
        assert torch.equal(a[1], b[1]), t
        assert a[2:] == b[2:], t
    for x, y in zip(want[-1], got[-1], strict=True):  # the cache, slot for slot
        assert torch.equal(x, y)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_guesses_follow_the_last_bigram():
    d = pred.Drafts(3)
    d.observe(np.array([1]))
    for tok in (2, 3, 1, 2):
        d.observe(np.array([tok]))
    assert d.guess(1).tolist() == [[3], [1], [2]]  # (1, 2) -> 3, (2, 3) -> 1, (3, 1) -> 2
    d.right = 0.0
    assert d.guess(1).shape == (0, 1)  # mostly wrong: no guesses


def test_files_decode_the_same_with_and_without_drafts(tiny_model, monkeypatch):
    data = CORPUS.encode()[:600]
    blob = llmzip.compress(data, model=tiny_model, threads=1, window=16, sinks=2)
    assert llmzip.decompress(blob, model=tiny_model, threads=1) == data
    monkeypatch.setattr(pred, "DRAFT_MOST", 0)
    monkeypatch.setattr(pred.Drafts.__init__, "__defaults__", (0,))
    assert llmzip.decompress(blob, model=tiny_model, threads=1) == data
