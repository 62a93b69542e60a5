"""The model step (llama.py + engine.py): close to transformers' float forward pass, exact
(the same bits) whatever the batch, kernel or thread count, and the ring-buffer cache."""

from __future__ import annotations

import pytest
import torch

from llmzip import model as models
from llmzip.engine.exact import Engine
from llmzip.engine.llama import Llama, LlamaConfig, longest_window
from llmzip.engine.weights import quantize_model
from llmzip.numeric import products
from llmzip.numeric.pairdot import unpair_keys
from tests.helpers import build_model_dir


def _llama(path: str) -> Llama:
    return models.load(path).llama


def _seq(llama: Llama, batch: int, steps: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, llama.config.vocab_size, (batch, steps), generator=gen)


def _run(llama: Llama, seq: torch.Tensor, window: int, sinks: int = 2) -> torch.Tensor:
    cache = llama.new_cache(seq.shape[0], window, sinks)
    return torch.stack([llama.step(cache, seq[:, t]) for t in range(seq.shape[1])], dim=1)


@pytest.fixture(scope="module")
def qwen_model(tmp_path_factory) -> str:
    return str(build_model_dir(tmp_path_factory.mktemp("qwen"), seed=3, kind="qwen2"))


@pytest.mark.parametrize("which", ["llama", "qwen2"])
def test_close_to_transformers(tiny_model, qwen_model, which):
    """The integer engine against transformers in float32 (no sliding: window > steps).
    Qwen2 adds q/k/v biases, an untied head and norm gains, which a model loaded wrongly
    would show at once."""
    from transformers import AutoModelForCausalLM

    path = tiny_model if which == "llama" else qwen_model
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    llama = _llama(path)
    seq = _seq(llama, 3, 40, 0)
    with torch.no_grad():
        ref = hf(seq).logits.double()  # [B, T, V]
    ours = _run(llama, seq, window=64).double()
    assert ours.dtype == torch.float64 and ours.shape == ref.shape
    p, q = torch.log_softmax(ref, -1), torch.log_softmax(ours, -1)
    kl = (p.exp() * (p - q)).sum(-1)
    assert kl.max() < 1e-3, kl.max()
    assert (ours - ref).abs().max() < 0.05 * ref.abs().max()


def test_a_stream_gets_the_same_bits_alone_or_in_any_batch(tiny_model):
    """Every operation is row by row and exact: batch size and position do not matter."""
    llama = _llama(tiny_model)
    seq = _seq(llama, 5, 40, 1)
    batched = _run(llama, seq, window=12)
    alone = _run(llama, seq[2:3], window=12)
    assert torch.equal(batched[2:3], alone)


def test_shrink_keeps_the_prefix_bit_for_bit(tiny_model):
    llama = _llama(tiny_model)
    seq = _seq(llama, 4, 50, 2)
    cache = llama.new_cache(4, 16, 2)
    out = []
    for t in range(seq.shape[1]):
        if t == 30:
            cache.shrink(2)
        out.append(llama.step(cache, seq[: cache.batch, t]))
    full = _run(llama, seq[:2], window=16)
    assert all(torch.equal(out[t][:2], full[:, t]) for t in range(50))


def test_threads_and_kernels_give_the_same_bits(tiny_model):
    """The int8 kernel (where the start-up probe found it exact) and the float32 kernel give
    the very same logits, with 1 or 2 threads."""
    llama = _llama(tiny_model)
    seq = _seq(llama, 3, 30, 3)
    base = _run(llama, seq, window=12)
    config, tensors = llama.config, _tensors(tiny_model)
    threads = torch.get_num_threads()
    try:
        for kernel in ("float32", "int8"):
            engine = Engine(config)
            if kernel == "int8" and not products.int8_is_exact("cpu"):
                continue
            engine.products.name = kernel
            other = Llama(config, engine, tensors)
            for n in (1, 2):
                torch.set_num_threads(n)
                assert torch.equal(_run(other, seq, window=12), base), (kernel, n)
    finally:
        torch.set_num_threads(threads)


def _tensors(path: str) -> dict[str, torch.Tensor]:
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    d = Path(path)
    config = LlamaConfig.from_hf(json.loads((d / "config.json").read_text()))
    return quantize_model(config, load_file(str(d / "model.safetensors")).__getitem__)


def test_float32_kernel_splits_long_inner_dimensions_exactly():
    gen = torch.Generator().manual_seed(4)
    for k in (64, 1032, 1033, 2100, 5000):
        a = torch.randint(-128, 128, (6, k), generator=gen).float()
        w = torch.randint(-127, 128, (k, 9), generator=gen).float()
        a[0], w[:, 0] = 127, 127  # the largest sums
        exact = (a.double() @ w.double()).float()  # exact, then rounded once
        assert torch.equal(products.float32_products(a, w), exact), k


def test_int8_probe_refuses_a_kernel_that_saturates(monkeypatch):
    """The AVX2 path of _int_mm saturates 16-bit sums: a kernel like that must be refused."""
    def saturating(a, b):
        return (a.int() @ b.int()).clamp(-32768, 32767)

    products.int8_is_exact.cache_clear()
    monkeypatch.setattr(torch, "_int_mm", saturating)
    try:
        assert not products.int8_is_exact("cpu")
    finally:
        products.int8_is_exact.cache_clear()


def test_window_slides_without_growing_and_sinks_move_up(tiny_model):
    llama = _llama(tiny_model)
    cache = llama.new_cache(1, window=8, sinks=2)
    for t in range(50):
        llama.step(cache, torch.tensor([t % llama.config.vocab_size]))
    assert cache.k_scale.shape[-1] == 8 and cache.kp.shape[-2] == 16 and cache.t == 50
    assert cache.offset == 40  # moved every 8 steps once the query was 16 past the sinks


def test_moved_sinks_are_their_keys_rotated_to_the_new_positions(tiny_model):
    """After a move, the sink slots hold the unrotated keys rotated at offset + i and
    quantised: the same as if they had been written there."""
    llama = _llama(tiny_model)
    e = llama.engine
    cache = llama.new_cache(2, window=8, sinks=2)
    for t in range(17):
        llama.step(cache, torch.tensor([t, t + 1]))
    assert cache.offset == 8
    cos, sin = e._rotary([8, 9])
    keys = e.rotate(cache.sink_keys, cos, sin)
    scale = keys.abs().amax(-1, keepdim=True).clamp(min=2.0**-100) / 127
    expected = torch.round(keys / scale).transpose(-1, -2).to(torch.int8)
    assert torch.equal(unpair_keys(cache.kp)[..., :2], expected)


def test_longest_window_keeps_sinks_within_the_trained_positions(tiny_model):
    config = _llama(tiny_model).config
    assert config.max_positions == 16384 and longest_window(config) == 8192
    unknown = LlamaConfig(**{**config.__dict__, "max_positions": None})
    assert longest_window(unknown) is None


def test_unknown_architectures_and_biases_are_refused():
    base = {"num_attention_heads": 4, "vocab_size": 10, "hidden_size": 8,
            "intermediate_size": 16, "num_hidden_layers": 1}
    with pytest.raises(ValueError, match="model type"):
        LlamaConfig.from_hf({**base, "model_type": "gpt2"})
    with pytest.raises(ValueError, match="biases"):
        LlamaConfig.from_hf({**base, "model_type": "llama", "attention_bias": True})
    assert LlamaConfig.from_hf({**base, "model_type": "qwen2"}).qkv_bias
