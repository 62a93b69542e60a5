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
