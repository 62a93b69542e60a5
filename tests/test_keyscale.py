"""Key exponents (keyscale.py): the rule, its exactness, and files of engines 1 and 2."""

from __future__ import annotations

import io
import zlib

import pytest
import torch
from safetensors.torch import load_file, save_file

import llmzip
from llmzip import model as models
from llmzip.engine import keyscale
from llmzip.format import container as fmt
from llmzip.numeric import jit
from tests.helpers import CORPUS, build_model_dir


def test_the_rule_on_sums_of_squares():
    sums = torch.ones((1, 1, 8), dtype=torch.int64) * 100
    sums[0, 0, 1] = 100 * 4**3  # 8x the median's root mean square: e = 3 ...
    sums[0, 0, 6] = 100 * 4**20  # ... on its rotary partner too (d + D/2); at most 12
    sums[0, 0, 3] = 1  # below the median: 0
    e = keyscale.from_sums(sums)
    assert e.dtype == torch.int32
    assert e[0, 0].tolist() == [0, 3, 12, 0, 0, 3, 12, 0]


def _spiky_qwen2(path):
    """A tiny Qwen2 whose key biases put two rotary pairs far above the rest, as the real one."""
    build_model_dir(path, kind="qwen2")
    w = load_file(str(path / "model.safetensors"))
    for name in [n for n in w if n.endswith("k_proj.bias")]:
        b = w[name].view(2, -1).clone()  # [kv heads, head_dim]
        b[:, [3, 3 + b.shape[1] // 2]] = 60.0
        b[:, 5] = -90.0
        w[name] = b.flatten()
    save_file(w, str(path / "model.safetensors"))
    return str(path)


@pytest.fixture(scope="module")
def spiky(tmp_path_factory) -> str:
    return _spiky_qwen2(tmp_path_factory.mktemp("spiky"))


def test_exponents_follow_the_spiky_dimensions_and_are_cached(spiky, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMZIP_CACHE", str(tmp_path))
    loaded = models.load(spiky)
    e = keyscale.measure(loaded)
    assert e.shape == (2, 2, 16) and e[:, :, 3].min() >= 4 and e[:, :, 5].min() >= 4
    assert torch.equal(e[..., :8], e[..., 8:])  # the same for both dimensions of a pair
    assert torch.equal(keyscale.measure(loaded), e)  # deterministic
    with jit.disabled():
        assert torch.equal(keyscale.measure(loaded), e)  # the engine's own bits either way
    keyscale._MEMO.clear()
    assert torch.equal(keyscale.exponents(loaded), e)
    assert len(list((tmp_path / "keys").glob("*.npy"))) == 1


def _header(blob: bytes) -> fmt.Header:
    return fmt.Header.read(io.BytesIO(blob))


def test_engine_2_files_round_trip_and_engine_1_files_still_decode(spiky, monkeypatch):
    data = (CORPUS.encode() * 3)[:2000]
    kw = {"model": spiky, "window": 64, "sinks": 2, "threads": 1, "streams": 2, "prime": 8}
    blob = llmzip.compress(data, **kw)
    assert _header(blob).model.engine == fmt.ENGINE_KEYS
    with jit.disabled():
        assert llmzip.compress(data, **kw) == blob  # the torch reference: the same bytes
    assert llmzip.decompress(blob, model=spiky) == data
    # A file made before key exponents existed (engine 1) decodes without them.
    monkeypatch.setattr(keyscale, "_MEMO", {models.load(spiky).fingerprint: None})
    old = llmzip.compress(data, **kw)
    assert _header(old).model.engine == fmt.ENGINE_EXACT and old != blob
    monkeypatch.setattr(keyscale, "_MEMO", {})
    assert llmzip.decompress(old, model=spiky) == data


def test_the_exponents_pay_on_spiky_keys(spiky, monkeypatch):
    """The reason they exist: with two huge key dimensions the LM alone codes better with them
    than without (a tiny random model, so only the direction is asserted)."""
    from llmzip.format.mixconfig import MixConfig

    data = CORPUS.encode()[:900]
    kw = {"model": spiky, "window": 256, "threads": 1, "streams": 1, "mix": MixConfig.lm_only()}
    with_keys = len(llmzip.compress(data, **kw))
    monkeypatch.setattr(keyscale, "_MEMO", {models.load(spiky).fingerprint: None})
    assert with_keys <= len(llmzip.compress(data, **kw))


def test_engine_numbers_in_headers():
    section = fmt.ModelSection(b"12345678", fmt.ENGINE_KEYS, 512, 4, 0, b"\x01")
    head = fmt.Header(1 << 20, section).to_bytes()
    assert fmt.Header.read(io.BytesIO(head)).model.engine == fmt.ENGINE_KEYS
    bad = bytearray(head)
    bad[bad.index(b"12345678") + 8] = 3  # an engine this llmzip does not know
    bad[-4:] = zlib.crc32(bytes(bad[:-4])).to_bytes(4, "little")
    with pytest.raises(fmt.FormatError, match="newer llmzip"):
        fmt.Header.read(io.BytesIO(bytes(bad)))


def test_models_without_outlying_keys_keep_engine_1(tiny_model):
    loaded = models.load(tiny_model)
    assert int(keyscale.measure(loaded).max()) < keyscale.MIN_USEFUL
    assert keyscale.exponents(loaded) is None
    blob = llmzip.compress(CORPUS.encode()[:300], model=tiny_model, window=16, threads=1)
    assert _header(blob).model.engine == fmt.ENGINE_EXACT
