"""What each of the engine's number forms costs a model, measured in float32 (measuring only).

    python benchmarks/quant_study.py MODEL FILE [--tokens N] [--variants float,w8,k8,...]

Builds transformers' model from a Llama or Qwen2 GGUF (dequantised to float32), then rounds weights,
activations, keys and values as engine.py does, one form or a set of them at a time, and
prints the LM-alone bits of the first N tokens of FILE (one forward pass, the model's start
token first). Variants (comma-separated): float; w8 (weights int8 per row, embedding aside);
e8 (embedding int8 per row); a16 (linear inputs and queries 16-bit per row); k8 (keys int8
per vector, after rotary); v8 (values int8 per vector); att16 (attention weights in
1/65536); k8e (k8 after keyscale.py's exponents); all (w8, a16, k8, v8: engine 1) and
alle (all, e8, att16, with the exponents: engine 2). Needs ~10 GB of memory for the 1.5B model.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

VARIANTS = {
    "all": ("w8", "a16", "k8", "v8"),
    "alle": ("w8", "a16", "k8", "v8", "e8", "att16", "exps"),
    "k8e": ("k8", "exps"),
}


def rows(x: torch.Tensor, top: float) -> torch.Tensor:
    """x rounded per row (last dimension) to integers of |q| <= top times a scale."""
    s = x.abs().amax(-1, keepdim=True).clamp(min=1e-30) / top
    return torch.round(x / s) * s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("file")
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--variants", default="float,w8,k8,v8,a16,all,k8e,alle")
    args = ap.parse_args()
    import importlib

    from transformers import AutoConfig, AutoModelForCausalLM

    from llmzip import model as models
    from llmzip.engine import keyscale
    from llmzip.model import gguf

    torch.set_grad_enabled(False)
    path = models.resolve(args.model)
    hf = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    hf._attn_implementation = "eager"
    mq = importlib.import_module(f"transformers.models.{hf.model_type}.modeling_{hf.model_type}")
    lm = AutoModelForCausalLM.from_config(hf).eval()
    loaded = models.load(args.model)
    source = gguf.GGUFWeights(path, loaded.llama.config)
    weights = {n: source[n] for n in source.names()}
    weights.setdefault("lm_head.weight", weights["model.embed_tokens.weight"])
    lm.load_state_dict(weights, strict=False)
    del weights
    exps = keyscale.measure(loaded).float()  # [L, G, D]
    ids = loaded.tokens.encode(Path(args.file).read_bytes())[: args.tokens].astype(np.int64)
    nbytes = len(loaded.tokens.decode(ids.astype(np.int32)))
    seq = torch.from_numpy(np.concatenate([[loaded.start_token], ids]))
    del loaded
    original = {n: p.detach().clone() for n, p in lm.named_parameters() if p.dim() == 2}
    on: set[str] = set()
    layer = [0]
    rotate = mq.apply_rotary_pos_emb

    def rotary(q, k, cos, sin, unsqueeze_dim=1):
        q, k = rotate(q, k, cos, sin, unsqueeze_dim)
        c = (2.0 ** exps[layer[0]])[None, :, None, :] if "exps" in on else None
        if "a16" in on:
            cq = 1.0 if c is None else c.repeat_interleave(q.shape[1] // c.shape[1], dim=1)
            q = rows(q * cq, 32639) / cq
        if "k8" in on:
            k = rows(k, 127) if c is None else rows(k / c, 127) * c
        return q, k

    mq.apply_rotary_pos_emb = rotary
    softmax = torch.nn.functional.softmax

    def rounded_softmax(x, dim=None, dtype=None, **kw):
        p = softmax(x, dim=dim, dtype=dtype, **kw)
        return torch.round(p * 65536) / 65536 if "att16" in on else p

    mq.nn.functional.softmax = rounded_softmax
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    for i, block in enumerate(lm.model.layers):
        block.self_attn.register_forward_pre_hook(lambda m, a, i=i: layer.__setitem__(0, i))
        block.self_attn.v_proj.register_forward_hook(
            lambda m, a, out: rows(out.view(*out.shape[:-1], -1, head_dim), 127).view(out.shape)
            if "v8" in on else None)
    for module in lm.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_pre_hook(
                lambda m, a: (rows(a[0], 32639),) if "a16" in on else None)
    for variant in args.variants.split(","):
        on.clear()
        on.update(VARIANTS.get(variant, (variant,)))
        for name, p in lm.named_parameters():
            if name in original:
                embed = "embed" in name
                quantised = ("w8" in on and not embed) or ("e8" in on and embed)
                p.copy_(rows(original[name], 127) if quantised else original[name])
        t = time.time()
        logp = torch.log_softmax(lm(seq[None, :-1]).logits[0].float(), -1)
        bits = -logp[torch.arange(len(ids)), torch.from_numpy(ids)].sum().item() / math.log(2)
        print(f"{variant}: {bits:.1f} bits, {bits / nbytes:.4f} bits/byte over {nbytes} bytes "
              f"({time.time() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
