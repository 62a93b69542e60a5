"""Times `llmzip -t` on each forged file of tests/forgeries.py (decompression bombs built from
a real file's model section): every one must fail with one line and exit 1, in seconds.

    python benchmarks/bombs.py [--model NAME]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import llmzip  # noqa: E402
from tests.forgeries import forgeries  # noqa: E402
from tests.helpers import CORPUS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    blob = llmzip.compress(CORPUS.encode()[:300], model=args.model)
    work = Path(tempfile.mkdtemp(prefix="llmzip-bombs-"))
    model = ["--model", args.model] if args.model else []
    print("| forgery | bytes | exit | seconds | message |")
    print("| --- | ---: | ---: | ---: | --- |")
    failed = False
    for name, data in forgeries(blob).items():
        path = work / f"{name}.llmz"
        path.write_bytes(data)
        start = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "llmzip", "-t", *model, str(path)],
                           capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - start
        lines = r.stderr.strip().splitlines()
        ok = r.returncode == 1 and len(lines) == 1 and seconds < 10
        failed |= not ok
        print(f"| {name} | {len(data):,} | {r.returncode} | {seconds:.1f} | "
              f"{lines[-1] if lines else ''} |")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
