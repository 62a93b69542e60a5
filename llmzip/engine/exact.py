"""The exact integer engine: how every number of a model step is computed (format 3).

Every value that reaches the coder is the same bits on every CPU, instruction set, thread count
and GPU, because each operation is one of:
- an integer product sum, computed by a kernel proven exact (numeric/products.py) and rounded
  once to float32;
- a sum of integers held exactly (float64 below 2**53);
- a single correctly rounded element-wise IEEE operation (``+ - * /``, sqrt, round, floor, max),
  each a separate eager torch op; where two are one op (``add(a, b, alpha=256)``), the product
  is exact, so a fused multiply-add gives the same bits;
- ``exp`` as a fixed polynomial (exactmath.exp32) or a table lookup (exactmath.exp_table), never
  libm's or a SIMD library's.

Numbers:
- Weights: int8 per output row (|w| <= 127, scale ``absmax / 127``).
- Activations entering a product: 16 bits per row (``|q| <= 32639``, scale ``absmax / 32639``),
  split into two int8 pieces ``q = 256 * hi + lo``; the product is ``256 * P(hi) + P(lo)``.
- RMSNorm: the gain scales x before it is quantised; 1 / rms(x) comes from the exact sum of
  squares of x as 16-bit integers and is one factor per row after the product.
- Keys and values: int8 per vector (scale ``absmax / 127``); queries 16 bits in two pieces.
  Scores are exact integer dot products times the scales. Attention weights come from a table
  of ``round(2**24 exp(-i / 256))`` at the score difference to the row's maximum (in steps of
  1/256); they are folded with the value scales into integers whose sum is at most
  2**16 + 1 + n / 2, so the value product is exact in float32 (127 * that < 2**24).
- silu is ``x / (1 + exp32(-x))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from llmzip.engine import kernels, rotary
from llmzip.engine.kernels import KV_MAX
from llmzip.engine.llama import LlamaConfig, cache_shape, grown, ring_step
from llmzip.engine.weights import scale_of
from llmzip.format.container import MAX_WINDOW
from llmzip.numeric import exactmath as xm
from llmzip.numeric import jit, linear16
from llmzip.numeric import linear as numeric_linear
from llmzip.numeric.linear import QMAX
from llmzip.numeric.pairdot import padded_window, unpair_keys, unpair_values
from llmzip.numeric.products import TIMED_ROWS, Products

F32, F64 = torch.float32, torch.float64
STEP_BITS = 8  # attention scores in steps of 1/256 (nats)
ATT_BITS = 24  # the largest attention weight of a row before renormalising
ATT_SIZE = 1 + math.ceil((ATT_BITS + 1) * math.log(2) * (1 << STEP_BITS))  # past it: weight 0
NORM_BITS = 16  # attention weights, folded with the value scales, sum to about 2**16
# The value products are exact up to the longest window a file may name:
assert 127 * (2**16 + 1 + MAX_WINDOW // 2) < 2**24


def _power_of_two(e: torch.Tensor) -> torch.Tensor:
    """2.0**e float32 for int32 e in [-126, 127], built from its bits (no libm)."""
    return ((e + 127) << 23).view(F32)


def _pieces(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The integers q = round(x / scale), |q| <= QMAX, as two pieces ``q = 256 hi + lo``
    written to out[0] = hi and out[1] = lo (hi in [-127, 127], lo in [-128, 127], exact in
    float32). Returns the scale [..., 1]."""
    scale = scale_of(x, QMAX)
    q = torch.div(x, scale).round_()
    hi, lo = out.unbind(0)
    torch.add(q, 128.0, out=hi).mul_(1.0 / 256).floor_()
    torch.sub(q, hi, alpha=256.0, out=lo)  # 256 hi is exact: no rounding, fused or not
    return scale


def fused_linear(lin: IntLinear, x: torch.Tensor, gain: torch.Tensor | None = None,
                 eps: float = 0.0) -> torch.Tensor:
    """numeric/linear.linear, or numeric/linear16.linear for the ``int16`` kernel: ``lin(x)``,
    or with ``gain`` ``Engine.normed_linear(x, lin, gain)`` with ``rms_eps = eps``."""
    if lin.products.name == "int16":
        return linear16.linear(lin, x, gain, eps)
    return numeric_linear.linear(lin, x, gain, eps)


class IntLinear:
    """int8 weights [N, K] with a float32 scale per output row (and an optional float32 bias)."""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, products: Products,
                 bias: torch.Tensor | None = None) -> None:
        self.w = products.prepare(q)
        self.scale = scale.to(device=products.device, dtype=F32)
        self.bias = None if bias is None else bias.to(device=products.device, dtype=F32)
        self.products = products

    def __call__(self, x: torch.Tensor, row: torch.Tensor | None = None) -> torch.Tensor:
        """x @ W^T (+ bias) for x [B, K] float32, through its 16-bit integers: the exact
        products of the pieces, ``256 P(hi) + P(lo)`` rounded once, times the activation scale
        (times ``row``, a factor per row, if given) and the weight scale."""
        if row is None and jit.usable(x):
            return fused_linear(self, x)  # the same bits, fused (numeric/linear.py, linear16.py)
        b = x.shape[0]
        pieces = torch.empty((2, b, x.shape[1]), dtype=F32, device=x.device)
        scale = _pieces(x, pieces)
        if row is not None:
            scale = scale * row
        a = pieces.view(2 * b, -1).to(self.products.activation_dtype())
        p = self.products(a, self.w)  # [2B, N]
        y = torch.add(p[b:], p[:b], alpha=256.0)  # 256 P(hi) is exact: one rounding
        y.mul_(scale).mul_(self.scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y


def linear_shapes(config: LlamaConfig) -> list[tuple[int, int]]:
    """The weight shapes (N, K) of one layer's products and of a slice of the LM head: what
    kernels.choose times the kernels on."""
    c = config
    C, D = c.hidden_size, c.head_dim
    return [((c.num_heads + 2 * c.num_kv_heads) * D, C), (C, c.num_heads * D),
            (2 * c.intermediate_size, C), (C, c.intermediate_size), (min(c.vocab_size, 4096), C)]


class Engine:
    """The arithmetic of the layer loop (llama.py) in format 3, on one device
    (interface.StepEngine, with attention_steps)."""

    runs_ahead = True

    def __init__(self, config: LlamaConfig, device: str | torch.device = "cpu",
                 rows: Sequence[int] = TIMED_ROWS) -> None:
        """``rows``: the activation rows per product the kernel is chosen for (products.py)."""
        self.config = config
        self.device = torch.device(device)
        self.products = Products(self.device, shapes=linear_shapes(config), rows=rows)
        self.table = xm.exp_table(STEP_BITS, ATT_BITS, 0, ATT_SIZE).to(self.device, F32)
        self.score_step = (1 << STEP_BITS) / math.sqrt(config.head_dim)  # per nat / sqrt(D)

    # ---------------------------------------------------------------- weights

    def build(self, config: LlamaConfig, t: dict[str, torch.Tensor]):
        """(embedding, layers, head) from the tensors of :func:`quantize_model`."""

        def lin(name: str) -> IntLinear:
            return IntLinear(t[name + ".q"], t[name + ".scale"], self.products,
                             t.get(name + ".bias"))

        def gain(name: str) -> torch.Tensor:
            return t[name].to(self.device, F32)

        embed = (t["embed.q"].to(self.device), t["embed.scale"].to(self.device, F32))
        layers = [(gain(f"layers.{i}.norm1"), lin(f"layers.{i}.qkv"), lin(f"layers.{i}.o"),
                   gain(f"layers.{i}.norm2"), lin(f"layers.{i}.gate_up"),
                   lin(f"layers.{i}.down")) for i in range(config.num_layers)]
        head = lin("head" if "head.q" in t else "embed")  # tied: the embedding's integers
        return embed, layers, (gain("head.norm"), head)

    @staticmethod
    def embed(table: tuple[torch.Tensor, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        q, scale = table
        tokens = tokens.to(q.device)
        return q[tokens].to(F32).mul_(scale[tokens][:, None])

    # ---------------------------------------------------------------- products and norms

    @staticmethod
    def linear(x: torch.Tensor, lin: IntLinear) -> torch.Tensor:
        return lin(x)

    def normed_linear(self, x: torch.Tensor, lin: IntLinear, gain: torch.Tensor) -> torch.Tensor:
        """lin(rmsnorm(x) * gain): the gain scales x before it is quantised (so the model's
        outlier dimensions do not take the other dimensions' bits), and 1 / rms(x) is one
        factor per row after the product, from the exact sum of squares of x as integers."""
        if jit.usable(x):
            return fused_linear(lin, x, gain, self.config.rms_eps)
        scale = scale_of(x, QMAX)
        q = torch.div(x, scale).round_().double()
        ss = torch.linalg.vecdot(q, q).unsqueeze(-1)  # exact: integers below 2**53
        s64 = scale.double()
        ms = ss * s64
        ms = ms * s64
        ms = ms / x.shape[-1]
        inv_rms = 1.0 / xm.sqrt(ms + self.config.rms_eps)  # correctly rounded (exactmath.sqrt)
        return lin(x * gain, inv_rms.float())

    @staticmethod
    def silu(x: torch.Tensor) -> torch.Tensor:
        if jit.usable(x):
            return kernels.silu_(x)
        return x / (xm.exp32(-x) + 1.0)

    # ---------------------------------------------------------------- attention

    def new_cache(self, config: LlamaConfig, batch: int, window: int, sinks: int,
                  key_exponents: torch.Tensor | None = None) -> KVCache:
        return KVCache(config, batch, window, sinks, self.device, key_exponents)

    def _rotary(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and the signed sin [len(positions), D] float32 (decimal arithmetic, rounded
        once): ``x * cos + roll(x, D/2) * sin`` is the rotation, the same bits as
        ``x * cos + cat(-x2, x1) * cat(s, s)`` (negation is exact)."""
        c = self.config
        t = torch.from_numpy(rotary.rows(positions, c.rope_theta, c.head_dim))
        cos = torch.cat([t[:, 0], t[:, 0]], dim=1).to(dtype=F32, device=self.device)
        sin = torch.cat([-t[:, 1], t[:, 1]], dim=1).to(dtype=F32, device=self.device)
        return cos, sin

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        y = x * cos
        return y.add_(x.roll(x.shape[-1] // 2, dims=-1).mul_(sin))

    def begin(self, cache: KVCache) -> tuple:
        """Once per step, before the layers: the slot, valid slots and rotary tables."""
        move, slot, n = ring_step(cache.t, cache.window, cache.sinks, cache.offset)
        if move:
            cache.offset += cache.window
        if move and cache.sinks:  # (without sinks there is nothing to rotate)
            cos, sin = self._rotary(list(range(cache.offset, cache.offset + cache.sinks)))
            keys = self.rotate(cache.sink_keys, cos, sin)  # [L, B, G, S, D]
            if cache.key_div is not None:
                keys.mul_(cache.key_div[:, None, :, None, :])  # exact: powers of two
            scale = scale_of(keys, KV_MAX)
            q = torch.div(keys, scale).round_()  # [L, B, G, S, D]
            cache.kp[..., : cache.sinks, :] = q.unflatten(-1, (-1, 2)).transpose(-2, -3)
            cache.k_scale[..., : cache.sinks] = scale[..., 0]
        cos, sin = self._rotary([cache.t])
        return slot, n, cos[0], sin[0]

    def attention(self, cache: KVCache, i: int, pos: tuple, qkv: torch.Tensor) -> torch.Tensor:
        """Store this step's keys and values of layer i and attend over the window: qkv
        [B, (H + 2G) D] -> [B, H D]."""
        if jit.usable(qkv):
            return kernels.attention(self, cache, i, pos, qkv)
        slot, n, cos, sin = pos
        c = self.config
        b, H, G, D = qkv.shape[0], c.num_heads, c.num_kv_heads, c.head_dim
        R = H // G
        qk = qkv[:, : (H + G) * D].view(b, H + G, D)
        v = qkv[:, (H + G) * D :].view(b, G, D)
        if slot < cache.sinks:
            cache.sink_keys[i, :, :, slot] = qk[:, H:]
        qk = self.rotate(qk, cos, sin)
        if cache.key_div is not None:  # q k = (q 2**e) (k 2**-e), exactly (keyscale.py)
            qk[:, H:].mul_(cache.key_div[i])
            qk[:, :H].mul_(cache.key_mul[i].repeat_interleave(R, dim=0))
        k = qk[:, H:]
        scale = scale_of(k, KV_MAX)
        cache.kp[i, :, :, :, slot] = torch.div(k, scale).round_().unflatten(-1, (-1, 2))
        cache.k_scale[i, :, :, slot] = scale[..., 0]
        scale = scale_of(v, KV_MAX)
        cache.vp[i, :, :, slot // 2, :, slot % 2] = torch.div(v, scale).round_()
        cache.v_scale[i, :, :, slot] = scale[..., 0]
        pieces = torch.empty((2, b, G, R, D), dtype=F32, device=qkv.device)
        q_scale = _pieces(qk[:, :H].reshape(b, G, R, D), pieces)  # [B, G, R, 1]
        pieces = pieces.permute(1, 2, 0, 3, 4).reshape(b, G, 2 * R, D)
        keys_t = unpair_keys(cache.kp[i, :, :, :, :n])  # (copies of the n valid slots only)
        values = unpair_values(cache.vp[i, :, :, : (n + 1) // 2])[:, :, :n]
        out = self.attend(pieces, q_scale, keys_t, cache.k_scale[i, :, :, :n], values,
                          cache.v_scale[i, :, :, :n])
        return out.view(b, H * D)

    def attention_steps(self, cache: KVCache, i: int, pos: list, qkv: torch.Tensor
                        ) -> torch.Tensor:
        """:meth:`attention` of T consecutive steps (``pos``: each one's :meth:`begin`), qkv
        [T B, (H + 2G) D] with rows step-major -> [T B, H D]: the same bits as T calls, in
        order."""
        if jit.usable(qkv):
            return kernels.attention_steps(self, cache, i, pos, qkv)
        b = qkv.shape[0] // len(pos)
        return torch.cat([self.attention(cache, i, p, qkv[t * b:(t + 1) * b])
                          for t, p in enumerate(pos)])

    def attend(self, pieces: torch.Tensor, q_scale: torch.Tensor, keys_t: torch.Tensor,
               k_scale: torch.Tensor, values: torch.Tensor,
               v_scale: torch.Tensor) -> torch.Tensor:
        """Query pieces [B, G, 2R, D] (hi rows, then lo rows) with their scale [B, G, R, 1];
        keys transposed [B, G, D, n] and values [B, G, n, D] (int8, or int8-valued float32), with
        scales [B, G, n] -> the attention output [B, G, R, D] float32.

        The weights e = T[i] (integers <= 2**24, z = their exact sum) are folded with the value
        scales and brought to integers a = round(e * v_scale * c) with
        c = 2**16 / (z * max(v_scale)), so that sum(a) <= 2**16 + 1 + n / 2 and the value
        product is exact in float32; the output is that product / (c z)."""
        r = q_scale.shape[2]
        s2 = torch.matmul(pieces, keys_t.to(F32))  # [B, G, 2R, n] exact integers
        s = torch.add(s2[:, :, r:], s2[:, :, :r], alpha=256.0)  # one rounding
        s.mul_(k_scale[:, :, None, :])
        d = torch.sub(s.amax(dim=-1, keepdim=True), s).mul_(q_scale * self.score_step)
        idx = d.round_().clamp_(max=ATT_SIZE - 1).to(torch.int64)
        e = torch.take(self.table, idx)  # integers <= 2**24
        z = e.sum(dim=-1, keepdim=True, dtype=F64)  # exact
        vmax = v_scale.amax(dim=-1, keepdim=True)[:, :, None].double()  # [B, G, 1, 1]
        c = float(1 << NORM_BITS) / (z * vmax)
        a = e.mul_(v_scale[:, :, None, :]).mul_(c.float()).round_()
        out = torch.matmul(a, values.to(F32))  # exact: 127 * sum(a) < 2**24
        return out.mul_((1.0 / (c.float().double() * z)).float())


_CACHED = ("kp", "vp", "k_scale", "v_scale", "sink_keys")


class KVCache:
    """Ring-buffer cache of int8 keys and values with their float32 scales, for B streams.
    (int8, not int8-valued float32: the attention reads the whole window each step, and a
    quarter of the bytes is most of its time.)

    Rolling keys are rotated at their absolute position once, when written. The ``sinks`` first
    tokens stay in the window for good; their unrotated keys are kept, and whenever the query
    gets 2W positions past them (``ring_step``) they are rotated anew to W positions later, so
    the model never sees a distance beyond 2W (llama.longest_window).
    """

    def __init__(self, config: LlamaConfig, batch: int, window: int, sinks: int,
                 device: torch.device, key_exponents: torch.Tensor | None = None) -> None:
        """``key_exponents`` [L, G, D] (keyscale.py; None: none, as in engine 1's files):
        the rotated keys are scaled by 2**-e and the queries by 2**e before they are
        quantised."""
        shape = cache_shape(config, batch, window, sinks, MAX_WINDOW)
        self.key_mul = self.key_div = None
        if key_exponents is not None:
            e = key_exponents.to(device=device, dtype=torch.int32)
            self.key_mul, self.key_div = _power_of_two(e), _power_of_two(-e)
        # Pairs (pair_keys, pair_values): the score product runs along the window, two key
        # dimensions at a time, the value product along the dimensions, two slots at a time.
        L, B, G, W, D = shape
        W = padded_window(W)
        self.kp = torch.zeros((L, B, G, D // 2, W, 2), dtype=torch.int8, device=device)
        self.vp = torch.zeros((L, B, G, W // 2, D, 2), dtype=torch.int8, device=device)
        self.k_scale = torch.ones(shape[:-1], dtype=F32, device=device)
        self.v_scale = torch.ones(shape[:-1], dtype=F32, device=device)
        self.sink_keys = torch.zeros((*shape[:3], sinks, shape[-1]), dtype=F32, device=device)
        self.window = window
        self.sinks = sinks
        self.t = 0  # tokens seen per stream (all streams advance together)
        self.offset = 0  # the sinks sit at positions offset .. offset + sinks - 1
        self.hidden: torch.Tensor | None = None  # last step's [B, C], before the final norm

    @property
    def batch(self) -> int:
        return self.kp.shape[1]

    def shrink(self, n: int) -> None:
        """Keep streams [0, n) only (finished streams drop out of the batch)."""
        for name in _CACHED:
            setattr(self, name, getattr(self, name)[:, :n])

    def grow(self, n: int) -> None:
        """Streams [batch, n) join as exact copies of stream 0 (its context, its positions)."""
        for name in _CACHED:
            setattr(self, name, grown(getattr(self, name), n))
