"""Writes golden .llmz files of the current format version with the tiny test model.

    python tests/golden/make_golden.py [NAME ...]
    python tests/golden/make_golden.py --models smollm2-135m qwen2.5-coder-1.5b

Run once per format version, and for a new case (by NAME) when a format feature is added
within a version: the files already committed stay as they are, and test_golden.py decodes
every one of them, so a change that breaks old files cannot land unnoticed.
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import llmzip  # noqa: E402
from llmzip.codec import stream  # noqa: E402
from llmzip.format import container as fmt  # noqa: E402
from llmzip.format.mixconfig import MixConfig  # noqa: E402
from tests.helpers import CORPUS, build_model_dir  # noqa: E402

SETTINGS = {"window": 16, "sinks": 2, "threads": 1}
TEXT = CORPUS.encode() * 2
CRLF = CORPUS.encode().replace(b"\n", b"\r\n").replace(b". ", b".\r\n").replace(b", ", b",\r\n")
# name: (data, settings, coded by the model: lzma is not tried, so the frames exercise the
# engine even where the tiny random model loses to lzma)
CASES = {
    "text": (TEXT, {"streams": 3}, True),
    "frames": (CORPUS.encode()[:900], {"streams": 2, "frame_size": 300}, True),
    "unprimed": (TEXT, {"streams": 3, "prime": 0}, True),
    "slides": (TEXT, {"streams": 1, "window": 24, "sinks": 4}, True),
    "unshared": (TEXT, {"streams": 3, "mix": MixConfig(shared=False, bias_adaptive=False)},
                 True),
    "lm-only": (TEXT, {"streams": 2, "mix": MixConfig.lm_only()}, True),
    # the short form of one coded frame, the warm-started mixer (mixer settings version 4)
    "short": (TEXT, {"streams": 2}, True),
    # tokens range-coded in two parts (header flag 8), short and long form
    "split": (TEXT, {"streams": 2}, True),
    "split-frames": (CORPUS.encode()[:900], {"streams": 2, "frame_size": 300}, True),
    # the model section's settings as one preset byte (header flag 16): one stream, window
    # 4096, 4 sinks, no priming, mixer preset 4
    "preset": (TEXT, {"streams": 1, "window": 4096, "sinks": 4, "prime": 0}, True),
    # CRLF text coded as LF text: short form (header flag 32), and per frame (kind | 16), the
    # middle frame starting with the LF of a CRLF that the frame boundary cut, so coded as is
    "crlf": (CRLF, {"streams": 2}, True),
    "crlf-frames": (CRLF[:299] + CRLF[305:606] + CRLF[:300], {"streams": 2, "frame_size": 300},
                    True),
    "binary": (bytes(range(256)) * 2 + b"\xff\xfe\x00", {}, False),
    "stored": (random.Random(0).randbytes(300), {}, False),
    "empty": (b"", {}, False),
}


# Files made with each named model at default settings (tests/golden/models/NAME.llmz): the
# model's own numbers reach the coder (test_golden decodes them where the model is installed).
MODEL_TEXT = (b"The golden files pin the format: a change that breaks them cannot land unnoticed. "
              b"def f(x):\n    return x * 2\n")


def make_model_golden(names: list[str]) -> None:
    out = HERE / "models"
    out.mkdir(exist_ok=True)
    for name in names:
        stream.TRY_LZMA = False
        (out / f"{name}.orig").write_bytes(MODEL_TEXT)
        (out / f"{name}.llmz").write_bytes(llmzip.compress(MODEL_TEXT, model=name))
        print(out / f"{name}.llmz")


def main() -> None:
    if sys.argv[1:2] == ["--models"]:  # make_golden.py --models NAME...
        make_model_golden(sys.argv[2:])
        return
    model = str(build_model_dir(Path(tempfile.mkdtemp()) / "tiny"))
    out = HERE / f"v{fmt.FORMAT_VERSION}"
    out.mkdir(exist_ok=True)
    names = sys.argv[1:] or list(CASES)
    for name in names:
        data, extra, coded = CASES[name]
        stream.TRY_LZMA = not coded
        (out / f"{name}.orig").write_bytes(data)
        (out / f"{name}.llmz").write_bytes(llmzip.compress(data, model=model,
                                                           **{**SETTINGS, **extra}))
        print(out / f"{name}.llmz")


if __name__ == "__main__":
    main()
