"""A small Llama forward pass for batched incremental decoding (one token per stream per step).

Shapes: B streams, L layers, H query heads, G key/value heads, D head size, W window slots.
The KV cache is a ring buffer ``[L, B, G, W, D]``: the first ``sinks`` slots keep the first
tokens of each stream for good (attention sinks), the rest are overwritten oldest-first once a
stream is longer than the window, so sliding the window moves no data and needs no re-prefill.
Keys are stored rotated at their rotary position; because attention scores depend only on
position differences, the cache is re-based every W steps by rotating the rolling keys back by W
positions (one pass over the cache), so positions stay below 2W.

Invariant (losslessness): the logits of a step are a pure function of the weights, the dtype,
the device, the numeric environment and the sequence of ``step``/``shrink``/``grow`` calls with
their batch shapes. The encoder and decoder make the very same calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


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

    @classmethod
    def from_hf(cls, cfg: dict) -> LlamaConfig:
        """From a Hugging Face ``config.json`` dict of a Llama-architecture model."""
        if cfg.get("model_type", "llama") not in ("llama", "mistral", "qwen2"):
            raise ValueError(f"unsupported model type {cfg.get('model_type')!r} (need a Llama)")
        heads = cfg["num_attention_heads"]
        rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
        theta = cfg.get("rope_theta", rope.get("rope_theta", 10000.0))
        if rope.get("rope_type", "default") not in ("default", None):
            raise ValueError(f"unsupported rope type {rope.get('rope_type')!r}")
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
        )


def longest_window(config: LlamaConfig) -> int | None:
    """The longest window whose attention distances stay within the model's trained positions
    (None: unknown). The rolling keys are at most W positions behind the query, but the sinks
    stay at positions 0..sinks-1 while the query reaches 2W before a rebase, so distances
    reach 2W. Measured with SmolLM2 (trained on 8192): sinks 10,000 positions back cost +3%
    per token, 14,000 back +104% (benchmarks/RESULTS.md)."""
    return None if config.max_positions is None else config.max_positions // 2


def ring_step(t: int, window: int, sinks: int, offset: int) -> tuple[bool, int, int]:
    """For token t of every stream: (re-base first?, cache slot, valid slots after writing).
    Shared by llama.py and exactllama.py: the same ring layout in both modes."""
    rebase = t >= window and t - offset >= 2 * window
    slot = t if t < window else sinks + (t - sinks) % (window - sinks)
    return rebase, slot, min(t + 1, window)


class KVCache:
    """Ring-buffer KV cache of all layers for B streams; see the module docstring."""

    def __init__(self, model: Llama, batch: int, window: int, sinks: int) -> None:
        c = model.config
        if not 0 <= sinks < window:
            raise ValueError("need 0 <= sinks < window")
        shape = (c.num_layers, batch, c.num_kv_heads, window, c.head_dim)
        self.k = torch.zeros(shape, dtype=model.kv_dtype, device=model.device)
        self.v = torch.zeros(shape, dtype=model.kv_dtype, device=model.device)
        self.window = window
        self.sinks = sinks
        self.t = 0  # tokens seen per stream (all streams advance together)
        self.offset = 0  # rotary position of token t is t - offset
        self.hidden: torch.Tensor | None = None  # last step's [B, C], before the final norm

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    def shrink(self, n: int) -> None:
        """Keep streams [0, n) only (finished streams drop out of the batch)."""
        self.k = self.k[:, :n]
        self.v = self.v[:, :n]

    def grow(self, n: int) -> None:
        """Streams [batch, n) join as exact copies of stream 0 (its context, its positions)."""
        self.k = grown(self.k, n)
        self.v = grown(self.v, n)


def grown(x: torch.Tensor, n: int) -> torch.Tensor:
    """x [L, B, ...] with rows B..n-1 of dimension 1 copied from row 0 (bit-exact copies)."""
    extra = x[:, :1].expand(-1, n - x.shape[1], *x.shape[2:])
    return torch.cat([x, extra], dim=1)


class Llama:
    """Llama decoder weights and the incremental step. Not an nn.Module: no autograd, no hooks."""

    def __init__(
        self,
        config: LlamaConfig,
        weights: dict[str, torch.Tensor],
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        kv_dtype: torch.dtype | None = None,
    ) -> None:
        """kv_dtype: storage and attention dtype of the KV cache (default: dtype). Attention
        reads the whole cache every step, so a 16-bit cache halves the dominant memory traffic
        at large batch even where the matmuls stay float32."""
        self.config = config
        self.dtype = dtype
        self.kv_dtype = kv_dtype or dtype
        self.device = torch.device(device)

        def w(name: str) -> torch.Tensor:
            return weights[name].to(device=self.device, dtype=dtype).contiguous()

        def norm(name: str) -> torch.Tensor:
            return weights[name].to(device=self.device, dtype=torch.float32).contiguous()

        self.embed = w("model.embed_tokens.weight")  # [V, C]
        head = "model.embed_tokens.weight" if config.tie_embeddings else "lm_head.weight"
        if head not in weights:
            head = "model.embed_tokens.weight"
        self.lm_head = self.embed if head == "model.embed_tokens.weight" else w(head)
        self.final_norm = norm("model.norm.weight")
        self.layers = []
        for i in range(config.num_layers):
            p = f"model.layers.{i}."
            qkv = torch.cat(
                [weights[p + f"self_attn.{n}_proj.weight"] for n in ("q", "k", "v")], dim=0
            )
            gate_up = torch.cat(
                [weights[p + "mlp.gate_proj.weight"], weights[p + "mlp.up_proj.weight"]], dim=0
            )
            self.layers.append(
                (
                    norm(p + "input_layernorm.weight"),
                    qkv.to(device=self.device, dtype=dtype).contiguous(),  # [(H+2G)D, C]
                    w(p + "self_attn.o_proj.weight"),  # [C, HD]
                    norm(p + "post_attention_layernorm.weight"),
                    gate_up.to(device=self.device, dtype=dtype).contiguous(),  # [2I, C]
                    w(p + "mlp.down_proj.weight"),  # [C, I]
                )
            )
        d = config.head_dim
        self.inv_freq = 1.0 / (
            config.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
        )  # [D/2], float64 so the tables are the same wherever they are built

    def new_cache(self, batch: int, window: int, sinks: int = 4) -> KVCache:
        return KVCache(self, batch, window, sinks)

    def _rotary(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin for one rotary position, [D] each, in the compute dtype."""
        angles = position * self.inv_freq
        angles = torch.cat([angles, angles])
        return (
            torch.cos(angles).to(device=self.device, dtype=self.dtype),
            torch.sin(angles).to(device=self.device, dtype=self.dtype),
        )

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def _rms_norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.config.rms_eps)
        return (weight * xf).to(self.dtype)

    def _rebase(self, cache: KVCache) -> None:
        """Rotate the rolling (non-sink) keys back by W positions; scores are unchanged.
        One layer at a time: the temporaries stay 1/L of the cache (all layers at once made a
        ~2 GB spike at 40 streams). The operations are element-wise, so the result does not
        depend on this split."""
        cos, sin = self._rotary(-cache.window)
        for layer in cache.k:  # [B, G, W, D]
            rolling = layer[:, :, cache.sinks :]
            rolling.copy_(self._rotate(rolling.to(self.dtype), cos, sin))
        cache.offset += cache.window

    @torch.inference_mode()
    def step(self, cache: KVCache, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per stream ([B] int64); return next-token logits [B, V] float32."""
        c = self.config
        b = tokens.shape[0]
        if b != cache.batch:
            raise ValueError(f"batch {b} != cache batch {cache.batch}")
        t = cache.t
        rebase, slot, n_valid = ring_step(t, cache.window, cache.sinks, cache.offset)
        if rebase:
            self._rebase(cache)
        cos, sin = self._rotary(t - cache.offset)
        H, G, D = c.num_heads, c.num_kv_heads, c.head_dim

        x = F.embedding(tokens.to(self.device), self.embed)  # [B, C]
        for i, (n1, qkv_w, o_w, n2, gu_w, down_w) in enumerate(self.layers):
            h = self._rms_norm(x, n1)
            qkv = F.linear(h, qkv_w)  # [B, (H+2G)D]
            q = qkv[:, : H * D].view(b, G, H // G, D)  # query heads grouped by their kv head
            k = qkv[:, H * D : (H + G) * D].view(b, G, D)
            v = qkv[:, (H + G) * D :].view(b, G, D)
            q = self._rotate(q, cos, sin).to(self.kv_dtype)
            cache.k[i, :, :, slot] = self._rotate(k, cos, sin)
            cache.v[i, :, :, slot] = v
            keys = cache.k[i, :, :, :n_valid]  # [B, G, n, D]
            values = cache.v[i, :, :, :n_valid]
            # The H/G query heads of a group act as H/G query positions without a mask: one
            # fused kernel, and the cache is read once per group, never copied per head.
            att = F.scaled_dot_product_attention(q, keys, values)  # [B, G, H/G, D]
            x = x + F.linear(att.reshape(b, H * D).to(self.dtype), o_w)
            h = self._rms_norm(x, n2)
            gate, up = F.linear(h, gu_w).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, down_w)
        cache.t += 1
        cache.hidden = x  # the residual stream before the final norm (recall.py)
        h = self._rms_norm(x, self.final_norm)
        # [V, C] @ [C, B] reads the big matrix once, row-major: ~2x faster than h @ W^T on CPU.
        return torch.matmul(self.lm_head, h.t()).t().float().contiguous()  # [B, V]
