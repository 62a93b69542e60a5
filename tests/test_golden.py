"""Format compatibility: every committed golden file, of every format version, still decodes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import llmzip
from llmzip import container as fmt
from llmzip.numerics import Numerics

GOLDEN = sorted((Path(__file__).parent / "golden").glob("v*/*.llmz"))


def test_golden_files_exist():
    assert GOLDEN, "tests/golden/ has no .llmz files: run tests/golden/make_golden.py"
    assert any(p.parent.name == f"v{fmt.FORMAT_VERSION}" for p in GOLDEN)


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden_file_decodes(tiny_model, path):
    blob = path.read_bytes()
    original = path.with_suffix(".orig").read_bytes()
    header = fmt.Header.read(io.BytesIO(blob))
    if header.model is not None and not header.portable:
        m = header.model
        here = Numerics(m.dtype, m.device, m.threads).env_fingerprint()
        if here != m.env:
            pytest.skip("golden file made in another numeric environment (machine-bound mode)")
    assert llmzip.decompress(blob, model=tiny_model) == original
