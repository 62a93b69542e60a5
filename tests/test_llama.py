"""Our forward pass against transformers, and the invariants of the ring-buffer KV cache."""

from __future__ import annotations

import torch

from llmzip import model as models
from llmzip.llama import Llama, LlamaConfig, longest_window


def _llama(path: str) -> Llama:
    return models.load(path).llama


def test_matches_transformers_logits(tiny_model):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    llama = _llama(tiny_model)
    seq = torch.randint(0, llama.config.vocab_size, (3, 40), generator=torch.Generator()
                        .manual_seed(0))
    with torch.no_grad():
        ref = hf(seq).logits  # [B, T, V], full causal attention
    cache = llama.new_cache(3, window=64, sinks=4)  # window > T: no sliding
    ours = torch.stack([llama.step(cache, seq[:, t]) for t in range(seq.shape[1])], dim=1)
    assert torch.allclose(ours, ref, atol=1e-4, rtol=1e-4), (ours - ref).abs().max()


def test_steps_are_deterministic_and_shrink_keeps_prefix(tiny_model):
    llama = _llama(tiny_model)
    seq = torch.randint(0, llama.config.vocab_size, (4, 70), generator=torch.Generator()
                        .manual_seed(1))

    def run(shrink_at: int | None) -> list[torch.Tensor]:
        cache = llama.new_cache(4, window=16, sinks=2)
        out = []
        for t in range(seq.shape[1]):
            if shrink_at is not None and t == shrink_at:
                cache.shrink(2)
            b = cache.batch
            out.append(llama.step(cache, seq[:b, t]))
        return out

    a, b = run(None), run(None)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = run(30)
    # Streams are independent: dropping streams 2 and 3 leaves 0 and 1 unchanged (to float
    # tolerance: batch shapes may pick other kernels).
    assert all(torch.allclose(x[:2], y[:2], atol=1e-5) for x, y in zip(a, c))


def test_rebase_keeps_attention_scores(tiny_model, monkeypatch):
    """Re-basing rotary positions every W steps changes nothing but rounding (without sinks,
    whose distance to the query re-basing deliberately keeps within [W, 2W))."""
    llama = _llama(tiny_model)
    seq = torch.randint(0, llama.config.vocab_size, (2, 100), generator=torch.Generator()
                        .manual_seed(2))

    def run() -> torch.Tensor:
        cache = llama.new_cache(2, window=16, sinks=0)
        return torch.stack([llama.step(cache, seq[:, t]) for t in range(seq.shape[1])])

    rebased = run()
    monkeypatch.setattr(Llama, "_rebase", lambda self, cache: None)
    plain = run()
    assert torch.allclose(rebased, plain, atol=1e-4)


def test_window_slides_without_growing(tiny_model):
    llama = _llama(tiny_model)
    cache = llama.new_cache(1, window=8, sinks=2)
    for t in range(50):
        llama.step(cache, torch.tensor([t % llama.config.vocab_size]))
    assert cache.k.shape[3] == 8 and cache.t == 50


def test_longest_window_keeps_sinks_within_the_trained_positions(tiny_model):
    config = _llama(tiny_model).config
    assert config.max_positions == 16384 and longest_window(config) == 8192
    unknown = LlamaConfig(**{**config.__dict__, "max_positions": None})
    assert longest_window(unknown) is None
