"""Format compatibility: every committed golden file, of every format version, still decodes;
the machine-bound files of llmzip 0.1 are refused with a clear message."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import llmzip
from llmzip import container as fmt
from llmzip.errors import MismatchError

GOLDEN = sorted((Path(__file__).parent / "golden").glob("v*/*.llmz"))


def _machine_bound(path: Path) -> bool:
    """A file of llmzip 0.1's machine-bound mode with a frame coded by the model."""
    f = io.BytesIO(path.read_bytes())
    header = fmt.Header.read(f)
    coded = any(isinstance(frame, fmt.CodedFrame) for _, frame in fmt.frames(f, header))
    return coded and header.model.engine == fmt.ENGINE_MACHINE_BOUND


def test_golden_files_exist():
    assert GOLDEN, "tests/golden/ has no .llmz files: run tests/golden/make_golden.py"
    assert any(p.parent.name == f"v{fmt.FORMAT_VERSION}" for p in GOLDEN)


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden_file_decodes(tiny_model, path):
    blob = path.read_bytes()
    original = path.with_suffix(".orig").read_bytes()
    if _machine_bound(path):
        with pytest.raises(MismatchError, match="machine-bound"):
            llmzip.decompress(blob, model=tiny_model)
        return
    assert llmzip.decompress(blob, model=tiny_model) == original
