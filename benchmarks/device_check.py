"""Device check of the exact engine (issues 21, 25): files made on the CPU decode on CUDA and
the reverse, byte for byte, with tokens/s on each side; and `--workers 2 --device cuda` gives
the one-process bytes.

    python benchmarks/device_check.py [--bytes 3000] [--layers 30]

The device machine cannot reach PyPI or this machine's model cache (and the converted default
model, 133 MB, is over what a call carries), so the models are built here: the tests' tiny
seeded model, and a random model of SmolLM2-135M's shapes (30 layers, hidden 576, 9 heads of
64, 3 KV heads, MLP 1536, vocabulary 49,152) whose speed is the real model's (the work of a
step does not depend on the weights). Every frame is coded by the model (lzma is not tried),
so the engine's numbers reach the coder. Without CUDA, the CPU sides run with 1 and 2 threads
(so the script can be tried anywhere). Prints one line per check; exit 1 if any differs.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def smollm2_shaped(path: Path, layers: int) -> str:
    """A random Llama directory with SmolLM2-135M's shapes and the tests' tokenizer."""
    import torch
    from safetensors.torch import save_file

    from tests.helpers import build_tokenizer

    path.mkdir(parents=True, exist_ok=True)
    build_tokenizer().save(str(path / "tokenizer.json"))
    hidden, heads, kv, inter, vocab, d = 576, 9, 3, 1536, 49152, 64
    (path / "config.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": vocab, "hidden_size": hidden,
        "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv, "head_dim": d, "rope_theta": 100000.0, "rms_norm_eps": 1e-5,
        "tie_word_embeddings": True, "max_position_embeddings": 8192}))
    g = torch.Generator().manual_seed(1)
    w = {"model.embed_tokens.weight": torch.randn(vocab, hidden, generator=g) * 0.02,
         "model.norm.weight": torch.ones(hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        for name, shape in (("self_attn.q_proj", (heads * d, hidden)),
                            ("self_attn.k_proj", (kv * d, hidden)),
                            ("self_attn.v_proj", (kv * d, hidden)),
                            ("self_attn.o_proj", (hidden, heads * d)),
                            ("mlp.gate_proj", (inter, hidden)), ("mlp.up_proj", (inter, hidden)),
                            ("mlp.down_proj", (hidden, inter))):
            w[p + name + ".weight"] = torch.randn(*shape, generator=g) * 0.05
        w[p + "input_layernorm.weight"] = torch.ones(hidden)
        w[p + "post_attention_layernorm.weight"] = torch.ones(hidden)
    save_file(w, str(path / "model.safetensors"))
    return str(path)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bytes", type=int, default=3000, help="input size for the big model")
    ap.add_argument("--layers", type=int, default=30)
    args = ap.parse_args()

    import torch

    import llmzip
    from llmzip.codec import stream
    from llmzip.codec.settings import Settings
    from tests.helpers import CORPUS, build_model_dir

    stream.TRY_LZMA = False  # every frame coded by the model
    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}; CUDA: "
          f"{torch.cuda.get_device_name(0) if cuda else 'none (CPU 1 vs 2 threads)'}",
          flush=True)
    sides = [("cpu", 8), ("cuda", None)] if cuda else [("cpu", 1), ("cpu", 2)]
    work = Path(tempfile.mkdtemp())
    text = (CORPUS.encode() * 200)
    failures = 0
    cases = [("tiny model", str(build_model_dir(work / "tiny")), text[:4000],
              {"window": 16, "streams": 3}),
             ("SmolLM2-shaped", smollm2_shaped(work / "big", args.layers), text[:args.bytes],
              {})]
    for label, model, data, opts in cases:
        blobs = {}
        for device, threads in sides:
            out = io.BytesIO()
            start = time.perf_counter()
            stats = stream.compress_stream(io.BytesIO(data), out, Settings(
                model=model, device=device, threads=threads, **opts))
            seconds = time.perf_counter() - start
            blob = blobs[(device, threads)] = out.getvalue()
            print(f"{label}: compress on {device} (threads {threads}): {len(data)} B, "
                  f"{stats.tokens} tokens -> {len(blob)} B in {seconds:.1f} s "
                  f"({stats.tokens / seconds:.0f} tokens/s, model load included)", flush=True)
        same = len(set(blobs.values())) == 1
        failures += not same
        print(f"{label}: the same bytes on every side: {same}", flush=True)
        blob = next(iter(blobs.values()))
        for device, threads in reversed(sides):
            start = time.perf_counter()
            back = llmzip.decompress(blob, model=model, device=device, threads=threads)
            seconds = time.perf_counter() - start
            ok = back == data
            failures += not ok
            print(f"{label}: decode on {device} (threads {threads}): {ok} in {seconds:.1f} s",
                  flush=True)
        if cuda and label != "tiny model":
            two = llmzip.compress(data, model=model, device="cuda", workers=2,
                                  frame_size=max(1, len(data) // 3))
            one = llmzip.compress(data, model=model, device="cuda",
                                  frame_size=max(1, len(data) // 3))
            failures += two != one
            print(f"{label}: --workers 2 --device cuda gives the one-process bytes: "
                  f"{two == one}", flush=True)
    print("PASS" if not failures else f"FAIL ({failures})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
