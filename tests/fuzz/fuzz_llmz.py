"""Coverage-guided fuzzing (atheris) of the container parser and the decoder front end.

    python tests/fuzz/fuzz_llmz.py parser  -atheris_runs=100000 tests/fuzz/corpus
    python tests/fuzz/fuzz_llmz.py decoder -atheris_runs=2000   tests/fuzz/corpus

Any input must end in an LlmzipError or a verified output: any other exception is a crash.
The decoder target uses the tiny seeded test model (built in a temporary directory).
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import llmzip
    from llmzip import container as fmt
    from llmzip.errors import LlmzipError

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.conftest import build_model_dir

MODEL: str | None = None


def parse(data: bytes) -> None:
    f = io.BytesIO(data)
    with contextlib.suppress(LlmzipError):
        header = fmt.Header.read(f)
        while not isinstance(fmt.read_frame(f, header), fmt.End):
            pass


def decode(data: bytes) -> None:
    with contextlib.suppress(LlmzipError):
        llmzip.decompress(data, model=MODEL)


def main() -> None:
    global MODEL
    target = sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1] in ("parser", "decoder") \
        else "parser"
    if target == "decoder":
        MODEL = str(build_model_dir(Path(tempfile.mkdtemp()) / "tiny"))
    atheris.Setup(sys.argv, parse if target == "parser" else decode)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
