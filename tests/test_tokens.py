"""bytes <-> tokens is lossless for every byte string, including bytes the vocabulary lacks."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmzip.model.tokens import LosslessTokenizer
from tests.helpers import CORPUS, build_tokenizer


@pytest.fixture(scope="module")
def full() -> LosslessTokenizer:
    return LosslessTokenizer(build_tokenizer())


@pytest.fixture(scope="module")
def partial() -> LosslessTokenizer:
    """A vocabulary without most single-byte tokens: those bytes travel escaped."""
    return LosslessTokenizer(build_tokenizer(full_alphabet=False))


def test_text_uses_merges(full):
    ids = full.encode(CORPUS.encode())
    assert len(ids) < len(CORPUS) / 2
    assert full.decode(ids) == CORPUS.encode()


def test_missing_bytes_are_escaped(partial):
    assert partial.escape is not None
    data = bytes(range(256)) + os.urandom(500)
    ids = partial.encode(data)
    assert partial.escape in ids.tolist()
    assert partial.decode(ids) == data


def test_escape_token_text_still_roundtrips(partial):
    data = b"literal <esc> and <|endoftext|> in text \xff"
    assert partial.decode(partial.encode(data)) == data


def test_decode_rejects_bad_ids(full, partial):
    with pytest.raises(ValueError):
        full.decode([full.vocab_size])
    with pytest.raises(ValueError):
        full.decode([-1])
    with pytest.raises(ValueError):
        partial.decode([partial.escape])


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=400), st.text(max_size=300).map(str.encode)))
def test_lossless_property(full, partial, data):
    for codec in (full, partial):
        assert codec.decode(codec.encode(data)) == data
