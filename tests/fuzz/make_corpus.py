"""Writes the small seed corpus of tests/fuzz/corpus/ (tiny seeded test model, this machine).

    python tests/fuzz/make_corpus.py

Seeds are valid files of several shapes (one stream, many streams, several frames, stored
frames, no model section) and a few hand-broken ones; the fuzzer mutates them. The files have
no .llmz suffix (that suffix is git-ignored outside tests/golden/).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import llmzip  # noqa: E402
from tests.forgeries import forgeries  # noqa: E402
from tests.helpers import CORPUS, build_model_dir  # noqa: E402

OUT = HERE / "corpus"
BASE = {"window": 16, "sinks": 2, "threads": 1}
TEXT = CORPUS.encode()
CASES = {
    "one-stream": (TEXT[:200], {"streams": 1}),
    "four-streams": (TEXT[:400], {"streams": 4}),
    "small-frames": (TEXT[:240], {"streams": 1, "frame_size": 80}),
    "mixed-frames": (TEXT[:120] + bytes(range(200)) + TEXT[120:240], {"frame_size": 160}),
    "stored": (bytes(range(0, 256, 3)), {}),
    "empty": (b"", {}),
    "invalid-utf8": (b"caf\xc3 \xff\xfe " + TEXT[:100], {"streams": 2}),
}


def main() -> None:
    model = str(build_model_dir(Path(tempfile.mkdtemp()) / "tiny"))
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    for name, (data, extra) in CASES.items():
        (OUT / name).write_bytes(llmzip.compress(data, model=model, **BASE, **extra))
    blob = (OUT / "one-stream").read_bytes()
    (OUT / "truncated").write_bytes(blob[: len(blob) // 2])
    (OUT / "trailing").write_bytes(blob + b"\x00")
    (OUT / "newer-version").write_bytes(b"LLMZ\x09" + blob[5:])
    crc = bytes.fromhex("c2412435")  # CRC-32 of b"abc", little-endian
    (OUT / "no-model-section").write_bytes(b"LLMZ\x01\x00\x10\x01\x03" + crc + b"abc"
                                           + b"\x00\x03" + crc)
    for name, data in forgeries((OUT / "one-stream").read_bytes()).items():  # bombs
        if len(data) < 8192:
            (OUT / f"forged-{name}").write_bytes(data)
    for p in sorted(OUT.iterdir()):
        print(p, p.stat().st_size)


if __name__ == "__main__":
    main()
