"""Peak memory (RSS) of llmzip against input size: does a 20 MB input need more than 1 MB?

    nice -n 15 .venv/bin/python benchmarks/memory.py --context 16 --streams 1024
    nice -n 15 .venv/bin/python benchmarks/memory.py --sizes 1 20 [--frame-size B] [--model M]

The first line is the run recorded in benchmarks/RELIABILITY.md: with llmzip's defaults
(context 512, automatic streams) the tiny model codes ~11 KB/s on the 2-core development
machine, so the three 20 MB runs would take ~1.5 hours; a 16-token window and 1024 streams
per frame make them several times faster. The frame size stays at its default (1 MiB): 1 frame for
1 MB, 20 frames for 20 MB.

Each run is a child process (``python -m llmzip ...``) whose own peak RSS comes from
``os.wait4`` (ru_maxrss of that child alone). Measured, per input size: ``compress`` from stdin
to stdout, ``compress FILE -o OUT``, and ``decompress FILE -o OUT`` (checked equal to the
input). The model is the tiny seeded test model of tests/helpers.py (``--model`` passes
another). The input is text-like: words of alice29.txt mixed with the words the tiny model's
tokenizer was trained on, shuffled with a fixed seed, so that frames are range-coded, not
stored (the table says how many of each). Inputs and outputs live in a temporary directory.

Bounded memory means the peak depends on the frame size, not on the input size: the last
column is peak(largest) / peak(smallest), expected within 1.10.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import ALICE, CORPUS, build_model_dir  # noqa: E402

MB = 1_000_000
CORPUS_WEIGHT = 30  # repeats of the tokenizer's training words: keeps tokens/byte < 0.75


def make_text(n_bytes: int, seed: int = 0) -> bytes:
    """n_bytes of shuffled words in lines of ~12 words (deterministic)."""
    words = ALICE.read_text(encoding="latin-1").split() + CORPUS.split() * CORPUS_WEIGHT
    rng = random.Random(seed)
    lines: list[str] = []
    size = 0
    while size < n_bytes:
        line = " ".join(rng.choices(words, k=12))
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines).encode("latin-1")[:n_bytes]


def run_child(argv: list[str], stdin: Path | None = None,
              stdout: Path | None = None) -> tuple[int, float]:
    """Run ``python -m llmzip argv``; returns (peak RSS in KiB of that child, seconds)."""
    cmd = [sys.executable, "-m", "llmzip", *argv]
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL  # noqa: SIM115
    fout = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, stderr=subprocess.PIPE, cwd=ROOT)
        err = proc.stderr.read() if proc.stderr else b""
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        for f in (fin, fout):
            if hasattr(f, "close"):
                f.close()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err.decode()}")
    return usage.ru_maxrss, seconds  # KiB on Linux


def frame_kinds(path: Path) -> str:
    """'coded/stored' frame counts from `llmzip info`."""
    out = subprocess.run([sys.executable, "-m", "llmzip", "info", str(path)], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"(\d+) coded and (\d+) stored frames", out)
    return f"{m.group(1)}/{m.group(2)}" if m else "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[1, 20],
                    help="input sizes in MB (10^6 bytes); default 1 20")
    ap.add_argument("--frame-size", type=int, default=None,
                    help="bytes per frame (default: llmzip's, 1 MiB)")
    ap.add_argument("--model", default=None, help="default: the tiny seeded test model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--context", type=int, default=None, help="default: llmzip's (512)")
    ap.add_argument("--streams", type=int, default=None, help="default: llmzip's (automatic)")
    ap.add_argument("--modes", nargs="+", default=["stdin", "file", "decompress"],
                    choices=["stdin", "file", "decompress"])
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="llmzip-memory-") as tmp:
        work = Path(tmp)
        model = args.model or str(build_model_dir(work / "tiny-model"))
        settings = ["--model", model, "--threads", str(args.threads), "-q"]
        for flag in ("frame_size", "context", "streams"):
            if getattr(args, flag):
                settings += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        print(f"# {platform.machine()} {platform.processor() or ''} python "
              f"{platform.python_version()}, model {args.model or 'tiny (tests/helpers.py)'}, "
              f"settings {' '.join(settings[2:])}")
        rows: dict[str, dict[float, tuple[int, float]]] = {m: {} for m in args.modes}
        kinds: dict[float, str] = {}
        for size in args.sizes:
            src = work / f"in-{size:g}MB.txt"
            src.write_bytes(make_text(int(size * MB)))
            packed = work / f"in-{size:g}MB.txt.llmz"
            if "stdin" in args.modes:
                rows["stdin"][size] = run_child(["compress", *settings, "-c"], stdin=src,
                                                stdout=work / "stdin.llmz")
                print(f"compress stdin {size:g} MB: {rows['stdin'][size][0] / 1024:.1f} MiB, "
                      f"{rows['stdin'][size][1]:.1f} s", flush=True)
            if "file" in args.modes or "decompress" in args.modes:
                res = run_child(["compress", *settings, str(src), "-o", str(packed)])
                if "file" in args.modes:
                    rows["file"][size] = res
                    print(f"compress file {size:g} MB: {res[0] / 1024:.1f} MiB, {res[1]:.1f} s",
                          flush=True)
                kinds[size] = frame_kinds(packed)
            if "decompress" in args.modes:
                back = work / "back.txt"
                rows["decompress"][size] = run_child(
                    ["decompress", "--model", model, "-q", str(packed), "-o", str(back)])
                if back.read_bytes() != src.read_bytes():
                    raise SystemExit(f"round trip failed for {size:g} MB")
                back.unlink()
                print(f"decompress {size:g} MB: {rows['decompress'][size][0] / 1024:.1f} MiB, "
                      f"{rows['decompress'][size][1]:.1f} s", flush=True)
            src.unlink()

    small, large = min(args.sizes), max(args.sizes)
    print()
    print("| run | " + " | ".join(f"{s:g} MB: peak RSS, time" for s in args.sizes)
          + f" | ratio {large:g} MB / {small:g} MB |")
    print("| --- |" + " --- |" * (len(args.sizes) + 1))
    names = {"stdin": "compress (stdin -> stdout)", "file": "compress FILE -o OUT",
             "decompress": "decompress FILE -o OUT"}
    for mode in args.modes:
        cells = [f"{rows[mode][s][0] / 1024:.1f} MiB, {rows[mode][s][1]:.0f} s"
                 for s in args.sizes]
        ratio = rows[mode][large][0] / rows[mode][small][0]
        print(f"| {names[mode]} | " + " | ".join(cells) + f" | {ratio:.3f} |")
    if kinds:
        print("\nframes coded/stored: " + ", ".join(f"{s:g} MB: {k}" for s, k in kinds.items()))


if __name__ == "__main__":
    main()
