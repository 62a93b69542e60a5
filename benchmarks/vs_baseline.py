"""This checkout against a baseline commit, in one run on the same host: size, bits per byte,
compress and decompress time, speed ratio and peak memory, every round trip checked, and
whether the two sides' files are byte-identical.

    python benchmarks/vs_baseline.py ../shared/data/alice29.txt [--bytes N] [--base 87322f5]
        [--isa avx2] [--threads N] [--repeat R] [-- extra compress flags for this checkout]

Each side first compresses 2,000 bytes untimed (a warm start: numba compiles its kernels once
per CPU kind and caches them), then runs `python -m llmzip compress -c` then `decompress -c`
in a fresh process (the baseline from a git worktree of --base, on PYTHONPATH; both with this
venv's packages and the model cache in ~/.cache/llmzip), the base first, then this checkout:
run it on a quiet machine. ``--repeat R`` makes R such rounds and prints each round's ratios
and their median (the host's speed drifts within a run: one round is one sample).
``--isa avx2`` emulates an AVX2-only host for both (ATEN_CPU_CAPABILITY=avx2,
ONEDNN_MAX_CPU_ISA=AVX2, NUMBA_CPU_NAME=haswell with Haswell's features: oneDNN's AVX2 int8
kernel saturates, so the int8 kernel fails its start-up probe); ``--isa avx2-ref`` is that with
oneDNN off in torch, so that ``torch._int_mm`` is torch's exact reference loop, as on an
AVX2-only AMD EPYC (the baseline e0cb0eb picks it there).
Peak memory is each child's ru_maxrss (os.wait4).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "NUMBA_CPU_NAME": "haswell",
         # (numba adds the host's own features to a named CPU unless told)
         "NUMBA_CPU_FEATURES": "+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+popcnt"}
ISAS = {"host": {}, "avx2": _AVX2,
        # an AVX2-only AMD host as torch sees it: no oneDNN int8 kernel, so torch._int_mm is
        # its exact reference loop (torch.backends.mkldnn off, through a sitecustomize)
        "avx2-ref": {**_AVX2, "LLMZIP_BENCH_NO_ONEDNN": "1"}}


def cpu_flags() -> str:
    """The instruction-set flags that matter here, from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8")
    return " ".join(f for f in wanted if f in flags)


def baseline_tree(rev: str) -> Path:
    """A worktree of ``rev`` (made once, reused)."""
    tree = Path(tempfile.gettempdir()) / f"llmzip-baseline-{rev}"
    if not (tree / "llmzip").is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
                       check=True, capture_output=True)
    return tree


def run(src: Path, args: list[str], data_in: Path, out: Path, env: dict[str, str]):
    """``python -m llmzip ARGS -c data_in > out`` from checkout ``src``: (seconds, peak MB)."""
    path = str(src)
    if env.get("LLMZIP_BENCH_NO_ONEDNN"):
        site = Path(tempfile.gettempdir()) / "llmzip-no-onednn"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(
            "import torch\ntorch.backends.mkldnn.enabled = False\n")
        path = f"{site}{os.pathsep}{path}"
    env = {**os.environ, **env, "PYTHONPATH": path}
    start = time.perf_counter()
    with open(out, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "llmzip", *args, "-q", "-c",
                                 str(data_in)], stdout=f, stderr=subprocess.PIPE, env=env,
                                cwd=src)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{src.name}: llmzip {' '.join(args)} failed: "
                         f"{proc.stderr.read().decode()[-500:]}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--bytes", type=int, help="only the first N bytes")
    ap.add_argument("--base", default="87322f5", help="baseline commit [87322f5]")
    ap.add_argument("--isa", choices=list(ISAS), default="host")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds of base then head; the ratios of each round and their median")
    ap.add_argument("extra", nargs="*", help="compress flags for this checkout only")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llmzip-vs-"))
    data = Path(args.file).read_bytes()[: args.bytes]
    sample = work / "input"
    sample.write_bytes(data)
    threads = ["--threads", str(args.threads)] if args.threads else []
    sides = {"base": (baseline_tree(args.base), threads),
             "head": (ROOT, threads + args.extra)}
    env = ISAS[args.isa]
    warm = work / "warm"
    warm.write_bytes(data[:2000])
    for src, flags in sides.values():
        # A first short run, not timed: compiles and caches what a first run on a new host
        # kind would (numba's kernels for that CPU), so both sides are timed warm.
        run(src, ["compress", *flags], warm, work / "warm.llmz", env)
    rounds, identical = [], []
    for _ in range(args.repeat):
        rows = {}
        for name, (src, flags) in sides.items():
            packed, back = work / f"{name}.llmz", work / f"{name}.out"
            tc, mc = run(src, ["compress", *flags], sample, packed, env)
            td, md = run(src, ["decompress", *threads], packed, back, env)
            ok = back.read_bytes() == data
            rows[name] = (packed.stat().st_size, tc, td, max(mc, md), ok)
        same = (work / "base.llmz").read_bytes() == (work / "head.llmz").read_bytes()
        rounds.append(rows)
        identical.append(same)
    kb = len(data) / 1024
    print(f"host: {cpu_flags()}; isa: {args.isa}; file: {args.file} "
          f"({len(data)} bytes); base {args.base}, head {' '.join(args.extra) or 'defaults'}")
    print("| round | side | bytes | bits/byte | compress | decompress | peak RSS | round trip |")
    print("| ---: | --- | ---: | ---: | --- | --- | ---: | --- |")
    ratios = []
    for r, rows in enumerate(rounds, 1):
        for name, (size, tc, td, peak, ok) in rows.items():
            print(f"| {r} | {name} | {size:,} | {8 * size / len(data):.4f} | {tc:.1f} s "
                  f"({kb / tc:.2f} KB/s) | {td:.1f} s ({kb / td:.2f} KB/s) | {peak:,.0f} MB | "
                  f"{'ok' if ok else 'FAILED'} |")
        (bs, btc, btd, _, _), (hs, htc, htd, _, _) = rows["base"], rows["head"]
        ratios.append((btc / htc, btd / htd))
        print(f"round {r}: head vs base: size {hs / bs - 1:+.2%}, compress {btc / htc:.2f}x "
              f"faster, decompress {btd / htd:.2f}x faster; files "
              f"{'byte-identical' if identical[r - 1] else 'differ'}")
    if len(rounds) > 1:
        print(f"median over {len(rounds)} rounds: compress "
              f"{statistics.median(c for c, _ in ratios):.2f}x, decompress "
              f"{statistics.median(d for _, d in ratios):.2f}x faster")
    if not all(r[4] for rows in rounds for r in rows.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
