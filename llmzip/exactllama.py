"""The portable Llama step: the same model as llama.py, computed so that the logits are the same
bits on every CPU, GPU, instruction set, thread count and BLAS.

How (exactmath.py has the primitives):
- Weights are integers (15 bits per row, power-of-two row scales), with the RMSNorm gains
  folded in. Activations entering a matrix product are rounded to integers per row (23 bits,
  power-of-two scale). The product runs as a float64 matmul of integers, exact in any order
  because every partial sum is an integer below 2**53; rescaling by powers of two is exact.
- RMSNorm needs the row's sum of squares: it is taken over the integer activations in int64
  (exact), and enters as one scale per row after the matmul.
- Attention: keys and values are stored as 15-bit integers with a power-of-two scale per
  vector; queries are rounded to 22 bits; scores are exact integer dot products
  times those scales. Softmax weights are ``exp`` (a fixed polynomial) rounded to 24-bit
  integers, so their sum is exact; the value sum is an exact integer matmul.
- Rotary cos/sin come from decimal arithmetic; silu is x / (1 + exp(-x)).
The ring-buffer cache, sinks and re-basing are those of llama.py.

Invariant (losslessness, everywhere): the logits of a step are a pure function of the weights
and the sequence of ``step``/``shrink``/``grow`` calls; batch position and size do not matter
either, since every operation is row-wise or exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from llmzip import exactmath as xm
from llmzip.llama import LlamaConfig, grown, ring_step

F64 = torch.float64
WEIGHT_BITS = 15
ACT_BITS = 23
QUERY_BITS = 22
KV_BITS = 15
PROB_BITS = 24  # attention weights
MAX_WINDOW = 1 << 13  # keeps the value sum exact with PROB_BITS + KV_BITS


class IntLinear:
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


class ExactKVCache:
    """Ring-buffer cache of integer keys/values (15 bits) and their power-of-two scales."""

    def __init__(self, model: ExactLlama, batch: int, window: int, sinks: int) -> None:
        c = model.config
        if not 0 <= sinks < window:
            raise ValueError("need 0 <= sinks < window")
        if window > MAX_WINDOW:
            raise ValueError(f"the portable mode takes windows up to {MAX_WINDOW}")
        shape = (c.num_layers, batch, c.num_kv_heads, window, c.head_dim)
        # Integer values held as float64: converting an int16 cache every step cost more
        # than reading 4x the bytes (measured: 0.65 vs 0.29 s per step at 40 streams).
        self.k = torch.zeros(shape, dtype=F64, device=model.device)
        self.v = torch.zeros(shape, dtype=F64, device=model.device)
        self.k_scale = torch.ones(shape[:-1], dtype=F64, device=model.device)
        self.v_scale = torch.ones(shape[:-1], dtype=F64, device=model.device)
        self.window = window
        self.hidden: torch.Tensor | None = None  # last step's [B, C], before the final norm
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


class ExactLlama:
    """Same interface as llama.Llama (``config``, ``new_cache``, ``step``); logits are float64."""

    portable = True

    def __init__(self, config: LlamaConfig, weights: dict[str, torch.Tensor],
                 device: str | torch.device = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)
        self.dtype = F64
        embed = weights["model.embed_tokens.weight"]
        self.embed = embed.to(device=self.device, dtype=torch.float32).contiguous()
        head = "lm_head.weight" if "lm_head.weight" in weights and not config.tie_embeddings \
            else "model.embed_tokens.weight"
        self.head = IntLinear(weights[head], self.device, weights["model.norm.weight"])
        self.layers = []
        for i in range(config.num_layers):
            p = f"model.layers.{i}."
            qkv = torch.cat([weights[p + f"self_attn.{n}_proj.weight"] for n in "qkv"], dim=0)
            gate_up = torch.cat(
                [weights[p + "mlp.gate_proj.weight"], weights[p + "mlp.up_proj.weight"]], dim=0)
            self.layers.append((
                IntLinear(qkv, self.device, weights[p + "input_layernorm.weight"]),
                IntLinear(weights[p + "self_attn.o_proj.weight"], self.device),
                IntLinear(gate_up, self.device, weights[p + "post_attention_layernorm.weight"]),
                IntLinear(weights[p + "mlp.down_proj.weight"], self.device),
            ))
        xm.check_exact(QUERY_BITS, KV_BITS, config.head_dim)
        self.inv_sqrt_d = 1.0 / math.sqrt(config.head_dim)

    def new_cache(self, batch: int, window: int, sinks: int = 4) -> ExactKVCache:
        return ExactKVCache(self, batch, window, sinks)

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

    def _norm_factor(self, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """1 / rms(x) * scale per row, for x ~= q * scale (q integer [B, C])."""
        ss = xm.integer_sum(q * q, keepdim=True).to(F64)  # exact: |q| <= 2**23
        ms = ss * scale
        ms = ms * scale
        ms = ms / q.shape[-1]
        return scale / torch.sqrt(ms + self.config.rms_eps)

    def _normed_linear(self, x: torch.Tensor, lin: IntLinear) -> torch.Tensor:
        q, scale = xm.quantize_rows(x, ACT_BITS)
        return lin(q, self._norm_factor(q, scale))

    @staticmethod
    def _linear(x: torch.Tensor, lin: IntLinear) -> torch.Tensor:
        q, scale = xm.quantize_rows(x, ACT_BITS)
        return lin(q, scale)

    def _rebase(self, cache: ExactKVCache) -> None:
        cos, sin = self._rotary(-cache.window)
        s = cache.sinks
        for i in range(cache.k.shape[0]):
            k = cache.k[i, :, :, s:] * cache.k_scale[i, :, :, s:, None]
            q, scale = xm.quantize_rows(self._rotate(k, cos, sin), KV_BITS)
            cache.k[i, :, :, s:] = q
            cache.k_scale[i, :, :, s:] = scale[..., 0]
        cache.offset += cache.window

    @torch.inference_mode()
    def step(self, cache: ExactKVCache, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per stream ([B] int64); return next-token logits [B, V] float64."""
        c = self.config
        b = tokens.shape[0]
        if b != cache.batch:
            raise ValueError(f"batch {b} != cache batch {cache.batch}")
        t = cache.t
        rebase, slot, n = ring_step(t, cache.window, cache.sinks, cache.offset)
        if rebase:
            self._rebase(cache)
        prob_bits = min(PROB_BITS, 52 - KV_BITS - max(1, (n - 1).bit_length()))
        cos, sin = self._rotary(t - cache.offset)
        H, G, D = c.num_heads, c.num_kv_heads, c.head_dim

        x = F.embedding(tokens.to(self.device), self.embed).to(F64)  # [B, C]
        for i, (qkv_w, o_w, gu_w, down_w) in enumerate(self.layers):
            qkv = self._normed_linear(x, qkv_w)
            q = qkv[:, : H * D].reshape(b, G, H // G, D)
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
            att = att / z
            x = x + self._linear(att.reshape(b, H * D), o_w)
            gate, up = self._normed_linear(x, gu_w).chunk(2, dim=-1)
            x = x + self._linear(xm.silu(gate) * up, down_w)
        cache.t += 1
        cache.hidden = x  # the residual stream before the final norm (recall.py)
        return self._normed_linear(x, self.head)  # [B, V] float64
