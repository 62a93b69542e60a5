"""The stream layout of a frame (layout.py): lengths, starts, the active prefix, and the
token table the encoder fills and the decoder reads back."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmzip.format.layout import MAX_AUTO_STREAMS, Layout, auto_streams


def test_split_lengths_are_non_increasing_and_cover():
    for n in (1, 5, 4096, 10_000, 1_000_003):
        for streams in (None, 1, 3, 64):
            for prime in (0, 128):
                if n <= prime:
                    continue
                lengths = Layout.split(n, streams, prime, 1000).lengths
                assert sum(lengths) == n
                assert all(a >= b for a, b in zip(lengths, lengths[1:]))
                assert lengths[-1] >= 1


def test_auto_streams_follows_the_segment_rule():
    assert auto_streams(100, 2560) == 1
    assert auto_streams(10 * 2560, 2560) == 10
    assert auto_streams(10 * 2560 - 1, 2560) == 9  # segments at least this long
    assert auto_streams(10**9, 512) == MAX_AUTO_STREAMS
    assert Layout.split(10**6, None, 0).streams == 1  # no segment: one stream
    assert Layout.split(10_000, None, 0, 1000).streams == 10


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 5000), streams=st.integers(1, 20), prime=st.integers(0, 300))
def test_active_streams_are_a_prefix_and_scatter_gather_invert(n, streams, prime):
    if n <= prime:
        return
    layout = Layout.split(n, streams, prime)
    tokens = np.arange(n, dtype=np.int64) + 7
    table = layout.scatter(tokens)
    assert table.shape == (layout.streams, layout.steps)
    assert np.array_equal(layout.gather(table), tokens)
    coded = 0
    for t in range(layout.steps):
        active = layout.active(t)
        inside = [s <= t < s + k for s, k in zip(layout.starts, layout.lengths)]
        assert inside == [True] * active + [False] * (layout.streams - active)
        coded += active
    assert coded == n
    assert layout.even


def test_priming_starts_the_other_streams_late():
    layout = Layout.split(1000, 4, 100)
    assert layout.starts == (0, 100, 100, 100)
    assert layout.active(99) == 1 and layout.active(100) == 4


@pytest.mark.parametrize("lengths, prime", [((), 0), ((3, 0), 0), ((2, 5), 0), ((5, 5), 1)])
def test_bad_layouts_are_refused(lengths, prime):
    with pytest.raises(ValueError):
        Layout(lengths, prime)
