"""Coverage-guided fuzzing (atheris) of the container parser and of the full decoder.

Acceptance runs (issue 7), from the repository root:

    nice -n 15 .venv/bin/python tests/fuzz/fuzz_llmz.py parser  -atheris_runs=100000
    nice -n 15 .venv/bin/python tests/fuzz/fuzz_llmz.py decoder -atheris_runs=2000

Without a corpus directory on the command line, the seeds (tests/fuzz/corpus/, made by
make_corpus.py, and the golden files tests/golden/v*/*.llmz) are copied into a temporary
working corpus, so the committed seeds are never overwritten by what the fuzzer finds. Any
other libFuzzer flag may follow (-max_len=4096 -timeout=20 -rss_limit_mb=4096 ...). The
tests/test_fuzz.py runs the same targets briefly.

Any input must end in an LlmzipError or a verified output: any other exception, a hang past
-timeout or memory past -rss_limit_mb is a crash. The decoder target decodes with the tiny
seeded test model (tests/helpers.py, built in a temporary directory), whose fingerprint the
seeds carry, so mutated inputs reach the range decoder and the predictor.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
from pathlib import Path

import atheris
import constriction  # noqa: F401 - third-party code is imported uninstrumented: coverage is
import numpy  # noqa: F401   measured in llmzip's own modules, and instrumenting torch made
import torch  # noqa: F401   the decoder run several times slower

with atheris.instrument_imports():
    import llmzip
    from llmzip.codec import stream as codec  # noqa: F401 - instrumented (llmzip itself loads it lazily)
    from llmzip.errors import LlmzipError
    from llmzip.format import container as fmt

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.helpers import build_model_dir  # noqa: E402

SEEDS = [*sorted((ROOT / "tests" / "fuzz" / "corpus").iterdir()),
         *sorted((ROOT / "tests" / "golden").glob("v*/*.llmz"))]
MODEL: str | None = None


def parse(data: bytes) -> None:
    f = io.BytesIO(data)
    with contextlib.suppress(LlmzipError):
        header = fmt.Header.read(f)
        for _ in fmt.frames(f, header):
            pass


MAX_TOKENS = 4096  # decoder target: work budget per input (the seeds claim a few hundred)


def claimed_tokens(data: bytes) -> int:
    """Tokens the coded frames of a well-formed container claim (0 if it does not parse)."""
    f = io.BytesIO(data)
    total = 0
    with contextlib.suppress(LlmzipError):
        header = fmt.Header.read(f)
        for _, frame in fmt.frames(f, header):
            total += sum(getattr(frame, "tokens", ()))
    return total


def decode(data: bytes) -> None:
    # Decoding time follows the token counts a file claims, not its size (the range decoder
    # reads zeros past a payload's end), so like a zip bomb a tiny forged file can ask for
    # minutes of work: bounded (at most 0.75 tokens per claimed byte), not a crash. Such inputs
    # are skipped so that -timeout keeps finding real hangs.
    if claimed_tokens(data) > MAX_TOKENS:
        return
    with contextlib.suppress(LlmzipError):
        llmzip.decompress(data, model=MODEL)


def _working_corpus() -> str:
    corpus = Path(tempfile.mkdtemp(prefix="llmz-fuzz-corpus-"))
    for seed in SEEDS:
        shutil.copy(seed, corpus / f"{seed.parent.name}-{seed.name}")
    return str(corpus)


def main() -> None:
    global MODEL
    target = sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1] in ("parser", "decoder") \
        else "parser"
    if not any(not a.startswith("-") for a in sys.argv[1:]):
        sys.argv.append(_working_corpus())
    if target == "decoder":
        MODEL = str(build_model_dir(Path(tempfile.mkdtemp()) / "tiny"))
    atheris.Setup(sys.argv, parse if target == "parser" else decode)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
