"""Do the logits change with the numeric environment? Fast mode against portable mode.

Runs the same token streams through llama.py (fast mode, float32) and exactllama.py (portable
mode) in this process and in child processes with other kernels and thread counts, and prints
how far each child's logits are from this process's: the fast mode's differ, the portable
mode's must be the same bits.

    python benchmarks/portable_check.py ../shared/data/alice29.txt [--model PATH] [--steps 48]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ENVS = {
    "this process (2 threads)": {},
    "1 thread": {"OMP_NUM_THREADS": "1", "LLMZIP_CHECK_THREADS": "1"},
    "AVX2 kernels, 1 thread": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                               "OMP_NUM_THREADS": "1", "LLMZIP_CHECK_THREADS": "1"},
    "no SIMD kernels": {"ATEN_CPU_CAPABILITY": "default"},
}


def child(text: Path, model: str | None, steps: int, out: Path) -> None:
    import torch

    from llmzip import model as models

    torch.set_num_threads(int(os.environ.get("LLMZIP_CHECK_THREADS", "2")))
    fast = models.load(model, dtype=torch.float32)
    exact = models.load(model, portable=True)
    tokens = np.asarray(fast.tokens.encode(text.read_bytes()[: 64 * steps]))
    batch = torch.as_tensor(tokens[: 4 * steps].reshape(4, steps), dtype=torch.int64)
    result = {}
    for name, m in (("fast", fast), ("portable", exact)):
        cache = m.llama.new_cache(4, 32, 4)  # a small window: the cache slides and re-bases
        result[name] = np.stack([m.llama.step(cache, batch[:, t]).double().cpu().numpy()
                                 for t in range(steps)])
    result["capability"] = np.array(torch.backends.cpu.get_cpu_capability())
    np.savez(out, **result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("text", type=Path)
    ap.add_argument("--model")
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.text, a.model, a.steps, a.child)
        return
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, env) in enumerate(ENVS.items()):
            out = Path(tmp) / f"{i}.npz"
            cmd = [sys.executable, __file__, str(a.text), "--steps", str(a.steps),
                   "--child", str(out)] + (["--model", a.model] if a.model else [])
            subprocess.run(cmd, env={**os.environ, **env}, check=True)
            runs[name] = dict(np.load(out))
    base = runs[next(iter(ENVS))]
    print(f"{a.steps} steps x 4 streams, window 32; max |logit - logit in this process|")
    print("| environment | torch kernels | fast mode | portable mode | portable sha256 |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in runs.items():
        fast = np.abs(r["fast"] - base["fast"]).max()
        port = np.abs(r["portable"] - base["portable"]).max()
        digest = hashlib.sha256(r["portable"].tobytes()).hexdigest()[:16]
        print(f"| {name} | {r['capability']} | {fast:.3g} | {port:.3g} | {digest} |")


if __name__ == "__main__":
    main()
