"""The model: a Llama-family decoder (Llama, Mistral, Qwen2) stepped one token per stream.

Shapes: B streams, L layers, H query heads, G key/value heads (R = H / G queries per group),
D head size, C hidden size, I intermediate size, V vocabulary, W window slots.

This module owns the layer loop and the ring layout of the KV cache; an engine owns the
arithmetic (exact.py: the exact integer engine of format 3; engine/legacy/: the arithmetic that
``--portable`` files of formats 1 and 2 were made with). The cache is a ring of W slots per
stream: the first ``sinks`` slots keep the first tokens for good (attention sinks), the rest
are overwritten oldest-first, so the window slides without moving data or re-prefilling.

Invariant (losslessness): the logits of a step are a pure function of the weights, the engine
and the sequence of ``step``/``shrink``/``grow`` calls with their batch sizes; every engine
computes them exactly (the same bits on every machine), row by row, so a stream's logits do
not depend on the other streams in the batch either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from llmzip.engine.interface import StepEngine


@dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float
    rms_eps: float
    tie_embeddings: bool
    max_positions: int | None = None  # positions the model was trained on, if known
    qkv_bias: bool = False  # Qwen2: the q, k and v projections have biases

    @classmethod
    def from_hf(cls, cfg: dict) -> LlamaConfig:
        """From a Hugging Face ``config.json`` dict of a Llama-family model."""
        kind = cfg.get("model_type", "llama")
        if kind not in ("llama", "mistral", "qwen2"):
            raise ValueError(f"unsupported model type {kind!r} (need llama, mistral or qwen2)")
        heads = cfg["num_attention_heads"]
        rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
        theta = cfg.get("rope_theta", rope.get("rope_theta", 10000.0))
        if rope.get("rope_type", "default") not in ("default", None):
            raise ValueError(f"unsupported rope type {rope.get('rope_type')!r}")
        if cfg.get("mlp_bias") or (kind != "qwen2" and cfg.get("attention_bias")):
            raise ValueError("unsupported biases (only Qwen2's q/k/v biases are known)")
        return cls(
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_layers=cfg["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=cfg.get("num_key_value_heads", heads),
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
            rope_theta=float(theta),
            rms_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            max_positions=cfg.get("max_position_embeddings"),
            qkv_bias=kind == "qwen2",
        )


def longest_window(config: LlamaConfig) -> int | None:
    """The longest window whose attention distances stay within the model's trained positions
    (None: unknown). The rolling keys are at most W positions behind the query, but the sinks
    fall up to 2W behind before they are moved up. Measured with SmolLM2 (trained on 8192):
    sinks 10,000 positions back cost +3% per token, 14,000 back +104% (benchmarks/RESULTS.md)."""
    return None if config.max_positions is None else config.max_positions // 2


def cache_shape(config: LlamaConfig, batch: int, window: int, sinks: int,
                max_window: int) -> tuple[int, int, int, int, int]:
    """[L, B, G, W, D] of a KV cache, after checking 0 <= sinks < window <= max_window (the
    engine's bound, which keeps its value sums exact)."""
    if not 0 <= sinks < window:
        raise ValueError("need 0 <= sinks < window")
    if window > max_window:
        raise ValueError(f"windows up to {max_window} tokens")
    return (config.num_layers, batch, config.num_kv_heads, window, config.head_dim)


def ring_step(t: int, window: int, sinks: int, offset: int) -> tuple[bool, int, int]:
    """For token t of every stream: (move the sinks' base up by W first?, cache slot, valid
    slots after writing). The sinks sit at positions ``offset ..``; they move when the query
    would be 2W past them."""
    rebase = t >= window and t - offset >= 2 * window
    slot = t if t < window else sinks + (t - sinks) % (window - sinks)
    return rebase, slot, min(t + 1, window)


def grown(x: torch.Tensor, n: int) -> torch.Tensor:
    """x [L, B, ...] with rows B..n-1 of dimension 1 copied from row 0 (bit-exact copies)."""
    extra = x[:, :1].expand(-1, n - x.shape[1], *x.shape[2:])
    return torch.cat([x, extra], dim=1)


class Llama:
    """Weights in an engine's form and the incremental step. Not an nn.Module."""

    def __init__(self, config: LlamaConfig, engine: StepEngine,
                 tensors: dict[str, torch.Tensor]) -> None:
        """``tensors``: the engine's weights (engine.build's names)."""
        self.config = config
        self.engine = engine
        self.embed, self.layers, self.head = engine.build(config, tensors)

    def new_cache(self, batch: int, window: int, sinks: int = 4,
                  key_exponents: torch.Tensor | None = None):
        """A KV cache; ``key_exponents`` (keyscale.py) only for the engines that take them."""
        if key_exponents is None:
            return self.engine.new_cache(self.config, batch, window, sinks)
        return self.engine.new_cache(self.config, batch, window, sinks, key_exponents)

    def step(self, cache, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per stream ([B] int64); return next-token logits [B, V]."""
        return self.steps(cache, tokens[None])

    @torch.inference_mode()
    def steps(self, cache, tokens: torch.Tensor) -> torch.Tensor:
        """Feed T tokens per stream at once ([T, B] int64: row t is step t's input, known in
        advance, as the encoder knows them); return the logits [T B, V] of the T steps (rows
        step-major) and leave ``cache.hidden`` [T B, C]. The same bits as T calls of
        :meth:`step`: every product and norm is row by row, and the attention runs step after
        step within each layer, so each query sees the window as it was at its step. The sinks
        may move (``ring_step``) only before the first of the T steps: see :meth:`steady`."""
        e = self.engine
        T, b = tokens.shape
        if b != cache.batch:
            raise ValueError(f"batch {b} != cache batch {cache.batch}")
        if self.steady(cache, T) < T:
            raise ValueError("the sinks would move within these steps")
        t0 = cache.t
        pos = []
        for t in range(t0, t0 + T):  # (begin reads cache.t)
            cache.t = t
            pos.append(e.begin(cache))
        cache.t = t0
        x = e.embed(self.embed, tokens.reshape(-1))  # [T B, C]
        for i, (norm1, qkv_w, o_w, norm2, gu_w, down_w) in enumerate(self.layers):
            qkv = e.normed_linear(x, qkv_w, norm1)  # [T B, (H+2G)D]: queries, keys, values
            if T == 1:
                att = e.attention(cache, i, pos[0], qkv)  # [B, HD]
            elif e.runs_ahead:
                att = e.attention_steps(cache, i, pos, qkv)  # [T B, HD]
            else:
                raise ValueError("this engine takes one step at a time")
            x = x + e.linear(att, o_w)
            gate, up = e.normed_linear(x, gu_w, norm2).chunk(2, dim=-1)
            x = x + e.linear(e.silu(gate) * up, down_w)
        cache.t = t0 + T
        cache.hidden = x  # the residual stream before the final norm (mixing/recall.py)
        return e.normed_linear(x, self.head[1], self.head[0])  # [T B, V]

    @staticmethod
    def steady(cache, most: int) -> int:
        """How many of the next ``most`` steps :meth:`steps` may take at once: up to the next
        step (after the first) at which the sinks move."""
        offset = cache.offset
        if ring_step(cache.t, cache.window, cache.sinks, offset)[0]:
            offset += cache.window  # (as begin does at the first step)
        for k in range(1, most):
            if ring_step(cache.t + k, cache.window, cache.sinks, offset)[0]:
                return k
        return most
