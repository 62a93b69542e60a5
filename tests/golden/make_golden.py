"""Writes golden .llmz files of the current format version with the tiny test model.

    python tests/golden/make_golden.py [NAME ...]

Run once per format version, and for a new case (by NAME) when a format feature is added
within a version: the files already committed stay as they are, and test_golden.py decodes
every one of them, so a change that breaks old files cannot land unnoticed.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import llmzip  # noqa: E402
from llmzip import container as fmt  # noqa: E402
from tests.helpers import CORPUS, build_model_dir  # noqa: E402

SETTINGS = {"window": 16, "sinks": 2, "threads": 1}
CASES = {
    "text": (CORPUS.encode() * 2, {"streams": 3}),
    "frames": (CORPUS.encode()[:900], {"streams": 2, "frame_size": 300}),
    "binary": (bytes(range(256)) * 2 + b"\xff\xfe\x00", {}),
    "empty": (b"", {}),
    "portable": (CORPUS.encode() * 2, {"streams": 3, "dtype": "portable"}),
    # Version 2: the cases above are primed (the default); these two are not. (v1/ also has
    # bias-sum cases, made when the mixer flag bias_sum was added within version 1.)
    "unprimed": (CORPUS.encode() * 2, {"streams": 3, "prime": 0}),
    "portable-unprimed": (CORPUS.encode() * 2, {"streams": 3, "dtype": "portable",
                                                "prime": 0}),
    # Made when the mixer flag bias_adaptive (AdaGrad bias) became the default within
    # version 2: the cases above have the plain SGD bias.
    "adagrad": (CORPUS.encode() * 2, {"streams": 3}),
    "portable-adagrad": (CORPUS.encode() * 2, {"streams": 3, "dtype": "portable"}),
    # Made when hidden-state recall (mixer settings version 2) became the default: the cases
    # above have none.
    "recall": (CORPUS.encode() * 2, {"streams": 3}),
    "portable-recall": (CORPUS.encode() * 2, {"streams": 3, "dtype": "portable"}),
}


def main() -> None:
    model = str(build_model_dir(Path(tempfile.mkdtemp()) / "tiny"))
    out = HERE / f"v{fmt.FORMAT_VERSION}"
    out.mkdir(exist_ok=True)
    names = sys.argv[1:] or list(CASES)
    for name in names:
        data, extra = CASES[name]
        (out / f"{name}.orig").write_bytes(data)
        (out / f"{name}.llmz").write_bytes(llmzip.compress(data, model=model,
                                                           **SETTINGS, **extra))
        print(out / f"{name}.llmz")


if __name__ == "__main__":
    main()
