"""Integration: the real default model on a few KB of English (alice29.txt where present)."""

from __future__ import annotations

import pytest

import llmzip
from tests.helpers import english_text

pytestmark = [pytest.mark.model, pytest.mark.slow]


def test_real_model_roundtrip_and_ratio(real_model):
    data = english_text()[2000:6000]
    blob = llmzip.compress(data, model=real_model, streams=2)
    assert llmzip.decompress(blob, model=real_model) == data
    bpb = 8 * len(blob) / len(data)
    assert bpb < 1.5, bpb


def test_real_model_tokenizer_is_lossless_on_binary(real_model):
    from llmzip import model

    codec = model.load(real_model).tokens
    data = bytes(range(256)) * 3 + "naïve 中文 \r\n".encode()
    assert codec.decode(codec.encode(data)) == data


def test_warm_start_and_short_form_pay_on_a_small_text(real_model):
    """A small input: the mixer's warm start (trained with this model, mixer.py) beats the flat
    start, and the short form of a one-frame file is what is written."""
    import io

    from llmzip.format import container as fmt
    from llmzip.format.mixconfig import MixConfig

    data = english_text()[6000:8000]
    warm = llmzip.compress(data, model=real_model, threads=1)
    flat = llmzip.compress(data, model=real_model, threads=1, mix=MixConfig(warm=False))
    assert llmzip.decompress(warm, model=real_model) == data
    assert fmt.Header.read(io.BytesIO(warm)).lone is not None
    assert len(warm) < len(flat), (len(warm), len(flat))


@pytest.mark.parametrize("level", range(1, 10))
def test_every_level_round_trips(real_model, level):
    """Each level's own settings (two frames, so that no small-input rule replaces them): the
    header carries the level's window, and the file decodes."""
    import io

    from llmzip.codec.settings import LEVELS
    from llmzip.format import container as fmt

    data = english_text()[8000:9200]
    blob = llmzip.compress(data, model=real_model, threads=1, level=level, frame_size=600)
    header = fmt.Header.read(io.BytesIO(blob))
    assert header.model is not None and header.model.window == LEVELS[level].window
    assert llmzip.decompress(blob, model=real_model, threads=1) == data
