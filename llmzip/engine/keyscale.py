"""Key exponents: powers of two that even out the key dimensions before they are quantised.

Keys are stored as int8 with one scale per vector (exact.py). Some models put a few key
dimensions far above the rest (Qwen2's key biases reach ~100 where the other dimensions are
~1-5), and then the other dimensions keep only a few of the 255 levels: on
Qwen2.5-Coder-1.5B this alone cost 4.0% of the LM's bits (benchmarks/RESULTS.md). Since
``q k = (q 2**e) (k 2**-e)`` exactly, the engine scales each rotated key dimension by 2**-e
and the query's by 2**e before quantising (the query has 16 bits to spare); both are
multiplications by powers of two, exact in float32.

The exponents e [L, G, D] are a function of the model alone: it runs the exact engine (without
exponents) over :data:`CALIBRATION`, takes each key dimension's sum of squares as exact
integers (the rotated keys rounded to 1/256), and gives a rotary pair (dimensions d and
d + D/2, which the rotation mixes) e = floor(log2(its mean square / the head's median)) / 2,
clamped to [0, MAX_EXPONENT]. Integer arithmetic after the engine's exact float32, so every
machine finds the same exponents; they are cached per model fingerprint. Files whose header
names engine 2 (container.ENGINE_KEYS) use them; engine 1's files do not. Changing anything
here changes what engine 2 decodes: that needs a new engine number.
"""

from __future__ import annotations

import numpy as np
import torch

from llmzip.cache import cache_dir

MAX_EXPONENT = 12
# Used only where some exponent reaches this (a key dimension 16x the head's median RMS):
# Qwen2.5-Coder-1.5B (largest 8) codes 2.3% smaller with them, SmolLM2-135M (largest 3) 0.1%
# larger (benchmarks/RESULTS.md), so its files stay engine 1's.
MIN_USEFUL = 4
SKIP = 4  # the first positions of each stream are not measured (the sinks' outliers)
STREAMS = 4
FIXED_POINT = 256  # keys are rounded to 1/256 before their squares are summed

CALIBRATION = (
    "The committee met on a grey Tuesday morning to decide what should be done about the old "
    "mill by the river. Some wanted it pulled down; others said it could be a library, a "
    "school, or a place where people might sell bread and vegetables on Saturdays. \"We have "
    "talked about this for three years,\" said Mrs. Alder, \"and the roof has not waited for "
    "us.\" Nobody laughed. In the end they agreed to ask an engineer, and to meet again in "
    "April.\n\n"
    "def merge(left, right):\n"
    "    \"\"\"Merge two sorted lists into one sorted list.\"\"\"\n"
    "    out, i, j = [], 0, 0\n"
    "    while i < len(left) and j < len(right):\n"
    "        if left[i] <= right[j]:\n"
    "            out.append(left[i]); i += 1\n"
    "        else:\n"
    "            out.append(right[j]); j += 1\n"
    "    return out + left[i:] + right[j:]\n\n"
    "Table 3. Mean yield per hectare, 1998-2004 (tonnes): wheat 7.9, barley 6.1, oats 5.4, "
    "rye 4.8. Figures for 2001 are estimates; see the notes on page 112.\n"
    "<p>Welcome to the <b>new</b> site! Read the <a href=\"/faq\">FAQ</a> first.</p>\n"
    "Chapter II. The wind had turned in the night, and when she opened the shutters the whole "
    "valley lay white and silent under a sky the colour of pewter. She thought of her brother, "
    "somewhere beyond the hills, and wondered whether the letter had reached him at last.\n"
)


_MEMO: dict[bytes, torch.Tensor | None] = {}


def exponents(model) -> torch.Tensor | None:
    """The key exponents [L, G, D] int32 of a loaded model (model.LoadedModel), None where
    none reaches MIN_USEFUL (then the model's files are engine 1's). Cached per fingerprint,
    on disk and in this process."""
    if model.fingerprint not in _MEMO:
        _MEMO[model.fingerprint] = _exponents(model)
    return _MEMO[model.fingerprint]


def _exponents(model) -> torch.Tensor | None:
    path = cache_dir() / "keys" / f"{model.fingerprint.hex()}-v1.npy"
    if path.exists():
        e = torch.from_numpy(np.load(path))
    else:
        e = measure(model)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{id(e)}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, e.numpy())
        tmp.replace(path)
    return e if int(e.max()) >= MIN_USEFUL else None


def measure(model) -> torch.Tensor:
    """Run the engine over the calibration text and compute the exponents (see above)."""
    llama = model.llama
    c = llama.config
    H, G, D = c.num_heads, c.num_kv_heads, c.head_dim
    ids = np.asarray(model.tokens.encode(CALIBRATION.encode()), dtype=np.int64)
    steps = len(ids) // STREAMS
    table = np.concatenate([np.full((STREAMS, 1), model.start_token, np.int64),
                            ids[: STREAMS * steps].reshape(STREAMS, steps)], axis=1)
    sums = torch.zeros((c.num_layers, G, D), dtype=torch.int64)
    engine = llama.engine
    attention = engine.attention

    def measuring(cache, i, pos, qkv):
        if cache.t >= SKIP:
            _, _, cos, sin = pos
            k = qkv[:, H * D:(H + G) * D].reshape(-1, G, D)
            k = engine.rotate(k, cos, sin).mul_(FIXED_POINT).round_().to(torch.int64)
            sums[i] += (k * k).sum(dim=0)  # exact: integers far below 2**63
        return attention(cache, i, pos, qkv)

    cache = llama.new_cache(STREAMS, table.shape[1], 0 if table.shape[1] < 8 else 4)
    engine.attention = measuring
    try:
        for t in range(table.shape[1] - 1):
            llama.step(cache, torch.from_numpy(table[:, t]))
    finally:
        del engine.attention  # back to the class's method
    return from_sums(sums)


def from_sums(sums: torch.Tensor) -> torch.Tensor:
    """Exponents [L, G, D] from the exact sums of squares [L, G, D] (integers)."""
    L, G, D = sums.shape
    half = D // 2
    out = torch.zeros((L, G, D), dtype=torch.int32)
    for i in range(L):
        for g in range(G):
            s = [int(v) for v in sums[i, g]]
            pairs = [max(s[d], s[d + half], 1) for d in range(half)]
            median = max(sorted(pairs)[(half - 1) // 2], 1)
            for d, p in enumerate(pairs):
                e = min(MAX_EXPONENT, max(0, (p.bit_length() - median.bit_length()) // 2))
                out[i, g, d] = out[i, g, d + half] = e
    return out
