"""The engine's weight form, made once when a model is converted: int8 rows with a float32
scale each (``w ~= q * scale``, |q| <= 127), and the RMSNorm gains as float32. Deterministic
element-wise float32 arithmetic: every machine converts a model to the same integers."""

from __future__ import annotations

from collections.abc import Callable

import torch

from llmzip.engine.llama import LlamaConfig
from llmzip.numeric.intmm import W_MAX
from llmzip.numeric.jit import TINY

F32 = torch.float32


def scale_of(x: torch.Tensor, top: float) -> torch.Tensor:
    """The per-row scale [..., 1] that maps a row's largest |x| to ``top``. Then
    ``|round(x / scale)| <= top`` without a clamp: x / scale is at most top(1 + 2**-23), which
    rounds to top. A zero row gets a tiny scale and stays zero."""
    return x.abs().amax(dim=-1, keepdim=True).clamp_(min=TINY) / top


def quantize_int8_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 [N, K] -> (int8 [N, K], float32 scale [N]): ``w ~= q * scale`` per row, |q| <= 127.
    Used once, when a model is converted; the result is part of the model's fingerprint."""
    w = w.to(F32)
    scale = scale_of(w, W_MAX)
    return torch.round(w / scale).to(torch.int8), scale[:, 0]


def quantize_model(config: LlamaConfig, get: Callable[[str], torch.Tensor],
                   progress: Callable[[int], object] | None = None) -> dict[str, torch.Tensor]:
    """Float weights -> the engine's tensors: int8 rows with scales, and the RMSNorm gains as
    float32. ``get(name)`` returns a weight by its Hugging Face name (KeyError if absent) and is
    asked for one layer's weights at a time, so a caller that dequantises on demand never holds
    the model in float32. Deterministic element-wise float32 arithmetic: every machine converts
    a model to the same integers."""
    out: dict[str, torch.Tensor] = {}

    def f32(name: str) -> torch.Tensor:
        return get(name).to(F32)

    def put(name: str, matrix: torch.Tensor) -> None:
        out[name + ".q"], out[name + ".scale"] = quantize_int8_rows(matrix)

    put("embed", f32("model.embed_tokens.weight"))
    try:
        head = None if config.tie_embeddings else f32("lm_head.weight")
    except KeyError:
        head = None
    if head is not None:  # a tied head is the embedding's integers (Engine.build)
        put("head", head)
    del head
    out["head.norm"] = f32("model.norm.weight")
    for i in range(config.num_layers):
        p = f"model.layers.{i}."
        out[f"layers.{i}.norm1"] = f32(p + "input_layernorm.weight")
        put(f"layers.{i}.qkv", torch.cat([f32(p + f"self_attn.{n}_proj.weight") for n in "qkv"]))
        if config.qkv_bias:
            out[f"layers.{i}.qkv.bias"] = torch.cat(
                [f32(p + f"self_attn.{n}_proj.bias") for n in "qkv"])
        put(f"layers.{i}.o", f32(p + "self_attn.o_proj.weight"))
        out[f"layers.{i}.norm2"] = f32(p + "post_attention_layernorm.weight")
        put(f"layers.{i}.gate_up",
            torch.cat([f32(p + "mlp.gate_proj.weight"), f32(p + "mlp.up_proj.weight")]))
        put(f"layers.{i}.down", f32(p + "mlp.down_proj.weight"))
        if progress is not None:
            progress(1)
    return out
