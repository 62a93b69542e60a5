"""The arithmetic of ``--portable`` files of formats 1 and 2 (llmzip 0.1), kept so they decode.

It runs in the same layer loop as the format-3 engine (engine/llama.py) and is exact in the same
sense (the same bits on every machine), operation for operation as llmzip 0.1 computed it:
- Weights are integers (15 bits per row, power-of-two row scales) with the RMSNorm gains
  folded in; activations entering a product are rounded to 23-bit integers per row; products
  are float64 matmuls of integers (exact below 2**53); 1 / rms from the int64 sum of squares.
- Keys and values are 15-bit integers with a power-of-two scale per vector, queries 22 bits;
  softmax weights are exactmath.exp rounded to 24-bit integers; the value sum is an exact
  integer matmul. Keys are stored rotated at ``t - offset``; every W steps the rolling keys
  are rotated back by W positions and quantised again (the re-base).
Nothing new is written with it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from llmzip.engine.llama import LlamaConfig, cache_shape, grown, ring_step
from llmzip.format.container import MAX_WINDOW
from llmzip.numeric import exactmath as xm

F64 = torch.float64
WEIGHT_BITS = 15
ACT_BITS = 23
QUERY_BITS = 22
KV_BITS = 15
PROB_BITS = 24  # attention weights
# The value sums stay exact with PROB_BITS + KV_BITS up to the longest window a file may name:
assert 52 - KV_BITS - (MAX_WINDOW - 1).bit_length() >= PROB_BITS


class LegacyLinear:
    """A weight matrix as integers with a power-of-two scale per output row."""

    def __init__(self, w: torch.Tensor, device: torch.device, gain: torch.Tensor | None = None):
        w = w.to(F64)
        if gain is not None:
            w = w * gain.to(F64)[None, :]
        q, scale = xm.quantize_rows(w, WEIGHT_BITS)
        xm.check_exact(WEIGHT_BITS, ACT_BITS, w.shape[1])
        self.q_t = q.t().contiguous().to(device)  # [in, out]
        self.scale = scale[:, 0].to(device)  # [out]

    def __call__(self, x: torch.Tensor, row_factor: torch.Tensor) -> torch.Tensor:
        """(x @ W^T) * scale * row_factor for integer x [B, in]; row_factor [B, 1]."""
        out = torch.matmul(x, self.q_t)
        out = out * self.scale
        return out * row_factor


class LegacyCache:
    """Ring-buffer cache of integer keys/values (15 bits, held as float64) and their
    power-of-two scales."""

    def __init__(self, config: LlamaConfig, batch: int, window: int, sinks: int,
                 device: torch.device) -> None:
        shape = cache_shape(config, batch, window, sinks, MAX_WINDOW)
        self.k = torch.zeros(shape, dtype=F64, device=device)
        self.v = torch.zeros(shape, dtype=F64, device=device)
        self.k_scale = torch.ones(shape[:-1], dtype=F64, device=device)
        self.v_scale = torch.ones(shape[:-1], dtype=F64, device=device)
        self.window = window
        self.hidden: torch.Tensor | None = None
        self.sinks = sinks
        self.t = 0
        self.offset = 0

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    def shrink(self, n: int) -> None:
        self.k, self.v = self.k[:, :n], self.v[:, :n]
        self.k_scale, self.v_scale = self.k_scale[:, :n], self.v_scale[:, :n]

    def grow(self, n: int) -> None:
        """Streams [batch, n) join as exact copies of stream 0."""
        self.k, self.v = grown(self.k, n), grown(self.v, n)
        self.k_scale, self.v_scale = grown(self.k_scale, n), grown(self.v_scale, n)


class LegacyEngine:
    """The operations of the layer loop (engine/llama.py) as formats 1-2 computed them
    (engine/interface.StepEngine, one step at a time)."""

    runs_ahead = False

    def __init__(self, config: LlamaConfig, device: str | torch.device = "cpu") -> None:
        if config.qkv_bias:
            raise ValueError("formats 1-2 had no models with biases")
        self.config = config
        self.device = torch.device(device)
        xm.check_exact(QUERY_BITS, KV_BITS, config.head_dim)
        self.inv_sqrt_d = 1.0 / math.sqrt(config.head_dim)

    def build(self, config: LlamaConfig, w: dict[str, torch.Tensor]):
        """(embedding, layers, head) from float32 weights under Hugging Face names."""
        dev = self.device
        embed = w["model.embed_tokens.weight"].to(device=dev, dtype=torch.float32).contiguous()
        head = ("lm_head.weight" if "lm_head.weight" in w and not config.tie_embeddings
                else "model.embed_tokens.weight")
        layers = []
        for i in range(config.num_layers):
            p = f"model.layers.{i}."
            qkv = torch.cat([w[p + f"self_attn.{n}_proj.weight"] for n in "qkv"], dim=0)
            gate_up = torch.cat([w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"]])
            layers.append((
                None, LegacyLinear(qkv, dev, w[p + "input_layernorm.weight"]),
                LegacyLinear(w[p + "self_attn.o_proj.weight"], dev),
                None, LegacyLinear(gate_up, dev, w[p + "post_attention_layernorm.weight"]),
                LegacyLinear(w[p + "mlp.down_proj.weight"], dev),
            ))
        return embed, layers, (None, LegacyLinear(w[head], dev, w["model.norm.weight"]))

    @staticmethod
    def embed(table: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return F.embedding(tokens.to(table.device), table).to(F64)

    def _norm_factor(self, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """1 / rms(x) * scale per row, for x ~= q * scale (q integer [B, C])."""
        ss = xm.integer_sum(q * q, keepdim=True).to(F64)  # exact: |q| <= 2**23
        ms = ss * scale
        ms = ms * scale
        ms = ms / q.shape[-1]
        return scale / torch.sqrt(ms + self.config.rms_eps)

    def normed_linear(self, x: torch.Tensor, lin: LegacyLinear, gain: None) -> torch.Tensor:
        q, scale = xm.quantize_rows(x, ACT_BITS)
        return lin(q, self._norm_factor(q, scale))

    @staticmethod
    def linear(x: torch.Tensor, lin: LegacyLinear) -> torch.Tensor:
        q, scale = xm.quantize_rows(x, ACT_BITS)
        return lin(q, scale)

    @staticmethod
    def silu(x: torch.Tensor) -> torch.Tensor:
        return xm.silu(x)

    def new_cache(self, config: LlamaConfig, batch: int, window: int,
                  sinks: int) -> LegacyCache:
        return LegacyCache(config, batch, window, sinks, self.device)

    def _rotary(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = xm.rotary(position, self.config.rope_theta, self.config.head_dim)
        cos_t = torch.tensor(cos + cos, dtype=F64, device=self.device)
        sin_t = torch.tensor(sin + sin, dtype=F64, device=self.device)
        return cos_t, sin_t

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def begin(self, cache: LegacyCache) -> tuple:
        """Once per step: re-base if due; the slot, valid slots, probability bits, rotary."""
        rebase, slot, n = ring_step(cache.t, cache.window, cache.sinks, cache.offset)
        if rebase:
            cos, sin = self._rotary(-cache.window)
            s = cache.sinks
            for i in range(cache.k.shape[0]):
                k = cache.k[i, :, :, s:] * cache.k_scale[i, :, :, s:, None]
                q, scale = xm.quantize_rows(self._rotate(k, cos, sin), KV_BITS)
                cache.k[i, :, :, s:] = q
                cache.k_scale[i, :, :, s:] = scale[..., 0]
            cache.offset += cache.window
        prob_bits = min(PROB_BITS, 52 - KV_BITS - max(1, (n - 1).bit_length()))
        cos, sin = self._rotary(cache.t - cache.offset)
        return slot, n, prob_bits, cos, sin

    def attention(self, cache: LegacyCache, i: int, pos: tuple,
                  qkv: torch.Tensor) -> torch.Tensor:
        """qkv [B, (H + 2G) D] -> [B, H D]."""
        slot, n, prob_bits, cos, sin = pos
        c = self.config
        b, H, G, D = qkv.shape[0], c.num_heads, c.num_kv_heads, c.head_dim
        q = qkv[:, : H * D].reshape(b, G, H // G, D)  # query heads grouped by their kv head
        k = qkv[:, H * D : (H + G) * D].reshape(b, G, D)
        v = qkv[:, (H + G) * D :].reshape(b, G, D)
        kq, ks = xm.quantize_rows(self._rotate(k, cos, sin), KV_BITS)
        vq, vs = xm.quantize_rows(v, KV_BITS)
        cache.k[i, :, :, slot] = kq
        cache.v[i, :, :, slot] = vq
        cache.k_scale[i, :, :, slot] = ks[..., 0]
        cache.v_scale[i, :, :, slot] = vs[..., 0]
        qq, qs = xm.quantize_rows(self._rotate(q, cos, sin), QUERY_BITS)  # [B,G,R,D]
        keys = cache.k[i, :, :, :n]  # [B, G, n, D]
        scores = torch.matmul(qq, keys.transpose(-1, -2))  # exact integers [B, G, R, n]
        scores = scores * cache.k_scale[i, :, :, None, :n]
        scores = scores * (qs * self.inv_sqrt_d)
        e = xm.exp(scores - scores.amax(dim=-1, keepdim=True))
        e = torch.round(e * float(1 << prob_bits))  # integers, the largest 2**prob_bits
        z = e.sum(dim=-1, keepdim=True)  # exact: integers below 2**53
        a, a_scale = xm.quantize_rows(e * cache.v_scale[i, :, :, None, :n], prob_bits)
        att = torch.matmul(a, cache.v[i, :, :, :n])  # exact [B, G, R, D]
        att = att * a_scale
        return (att / z).reshape(b, H * D)
