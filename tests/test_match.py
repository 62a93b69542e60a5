"""The match model (match.py): following a repeat, dropping it, across streams."""

from __future__ import annotations

import numpy as np

from llmzip.mixing.match import Match


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
