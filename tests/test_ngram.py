"""The token n-gram model (ngram.py): counts, one step's collisions, shared or not."""

from __future__ import annotations

import numpy as np

from llmzip.mixing.ngram import NGram


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
