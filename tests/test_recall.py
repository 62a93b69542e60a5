"""Hidden-state recall (recall.py): what it predicts, and that nothing but its inputs decides it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmzip.mixing import recall as rc
from llmzip.mixing.ngram import SLOTS
from llmzip.mixing.recall import Recall

D = 24


def _feed(recall: Recall, states: np.ndarray, tokens: np.ndarray) -> None:
    recall.predict(states)
    recall.update(tokens)


def test_empty_recall_predicts_nothing():
    tok, votes, own = Recall(8, 48.0).predict(np.ones((3, D)))
    assert tok.shape == votes.shape == (3, SLOTS) and not votes.any() and not own.any()


def test_recalls_the_token_that_followed_the_most_similar_state():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, D))
    recall = Recall(8, 48.0)
    _feed(recall, np.stack([a, b]), np.array([5, 9]))
    tok, votes, own = recall.predict(np.stack([a + 0.01 * rng.normal(size=D), b]))
    assert tok[0, 0] == 5 and tok[1, 0] == 9
    assert votes[0, 0] > 1000 * max(votes[0, 1], 1)  # the dissimilar state hardly votes
    assert np.all(own >= 3 * (len(rc.COS_EDGES) - 1))  # near-identical: the top cosine buckets


def test_votes_are_summed_per_token_and_ranked():
    rng = np.random.default_rng(1)
    s = rng.normal(size=D)
    recall = Recall(8, 48.0)
    _feed(recall, np.stack([s, s, s]), np.array([7, 3, 7]))
    tok, votes, _ = recall.predict(s[None])
    assert list(tok[0, :2]) == [7, 3] and votes[0, 0] == 2 * votes[0, 1] == 2 << rc.VOTE_BITS


def test_ties_at_the_kth_similarity_all_vote():
    """12 identical states, K = 8: which 8 a selection algorithm picks must not matter."""
    s = np.random.default_rng(2).normal(size=D)
    recall = Recall(8, 48.0)
    _feed(recall, np.tile(s, (12, 1)), np.arange(12))
    tok, votes, own = recall.predict(s[None])
    assert list(tok[0]) == [0, 1, 2, 3]  # equal votes: the smaller tokens first
    assert np.all(votes[0] == 1 << rc.VOTE_BITS) and own[0] % 3 == 2


def test_the_ring_forgets_the_oldest_states():
    rng = np.random.default_rng(3)
    first = rng.normal(size=D)
    recall = Recall(8, 48.0)
    _feed(recall, first[None], np.array([42]))
    assert recall.predict(first[None])[0][0, 0] == 42
    recall.update(np.array([1]))
    for _ in range(255 // 5 + 1):
        _feed(recall, rng.normal(size=(5, D)), rng.integers(100, 200, size=5))
    assert recall.size == 256
    assert 42 not in recall.tokens


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 6), steps=st.integers(1, 12))
def test_prediction_depends_only_on_the_states(seed, n, steps):
    """Scaling every state (cosine ignores it) or handing them over as float32 tensors on
    another thread count gives bit-identical predictions."""
    rng = np.random.default_rng(seed)
    states = rng.normal(size=(steps, n, D)).round(3)
    tokens = rng.integers(0, 50, size=(steps, n))
    outs = []
    for variant in range(2):
        recall = Recall(8, 32.0)
        got = []
        threads = torch.get_num_threads()
        try:
            if variant:
                torch.set_num_threads(1)
            for t in range(steps):
                h = states[t] * (2.0 ** 10 if variant else 1.0)  # power of two: exact
                got.append(recall.predict(torch.tensor(h) if variant else h))
                recall.update(tokens[t])
        finally:
            torch.set_num_threads(threads)
        outs.append(got)
    for a, b in zip(*outs):
        for x, y in zip(a, b):
            assert np.array_equal(x, y)


def test_projection_is_fixed():
    p = rc.projection(5)
    assert p.shape == (5, rc.PROJ) and set(np.unique(p)) == {-1.0, 1.0}
    assert np.array_equal(p, rc.projection(5))
    assert abs(p.mean()) < 0.1  # balanced signs
    # The first bits of the format: a changed generator would silently break old files.
    assert "".join("+" if v > 0 else "-" for v in p[0, :16]) == _FIRST_SIGNS


def test_quantize_bounds_and_exact_scale():
    x = np.array([[0.3, -1.7, 2.5], [0.0, 0.0, 0.0], [1e-300, -3e-300, 0.0]])
    q = rc.quantize(x, 7)
    assert np.all(np.abs(q) <= 128) and np.all(q == np.round(q))
    assert q[0, 2] == 80 and not q[1].any()  # 2.5 < 4 = 2**2: scale 2**(7-2)


def test_hidden_size_must_not_change_within_a_frame():
    recall = Recall(8, 48.0)
    _feed(recall, np.ones((1, D)), np.array([1]))
    with pytest.raises(ValueError, match="hidden size"):
        recall.predict(np.ones((1, D + 1)))


_FIRST_SIGNS = "+-+-+++------+-+"


def test_stored_keys_read_back_in_ring_order_after_a_wrap():
    """The int16 blocked store (intmm's layout) holds each entry's quantised key at its ring
    position: stored() is the keys of the newest 256 entries, and the kernel's dot products
    with a query are the float reference's."""
    rng = np.random.default_rng(5)
    recall = Recall(8, 48.0)
    keys = []
    for _ in range(60):
        h = rng.normal(size=(7, D))
        keys.append(recall._keys_of(h))
        _feed(recall, h, rng.integers(0, 9, size=7))
    ring = np.zeros((256, rc.PROJ), np.float32)
    for i, k in enumerate(np.concatenate(keys)):
        ring[i % 256] = k
    assert np.array_equal(recall.stored(), ring)
    q = recall._keys_of(rng.normal(size=(3, D)))
    assert np.array_equal(recall._dots(q), q.astype(np.float64) @ ring.T.astype(np.float64))
