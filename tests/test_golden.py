"""Format compatibility: every committed golden file, of every format version, still decodes;
the machine-bound files of llmzip 0.1 are refused with a clear message."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

import llmzip
from llmzip.errors import MismatchError
from llmzip.format import container as fmt
from tests.helpers import subprocess_env

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
    short = fmt.Header.read(io.BytesIO((GOLDEN[0].parent.parent / "v3/short.llmz").read_bytes()))
    assert short.lone is not None and short.model.mix == b"\x04"  # short form, warm start
    assert not short.model.split
    for name in ("split", "split-frames"):  # tokens coded in two parts, short and long form
        split = fmt.Header.read(io.BytesIO((GOLDEN[0].parent.parent / f"v3/{name}.llmz")
                                           .read_bytes()))
        assert split.model.split and (split.lone is not None) == (name == "split")
    blob = (GOLDEN[0].parent.parent / "v3/preset.llmz").read_bytes()
    assert blob[6] & fmt.FLAG_PRESET and blob[5] == 11  # flags, fingerprint, engine, preset
    crlf = fmt.Header.read(io.BytesIO((GOLDEN[0].parent.parent / "v3/crlf.llmz").read_bytes()))
    assert crlf.lone is not None and crlf.crlf  # CRLF text coded as LF text, short form
    f = io.BytesIO((GOLDEN[0].parent.parent / "v3/crlf-frames.llmz").read_bytes())
    marks = [frame.crlf for _, frame in fmt.frames(f, fmt.Header.read(f))
             if isinstance(frame, fmt.CodedFrame)]
    assert marks == [True, False, True]  # and per frame, long form


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden_file_decodes(tiny_model, path):
    blob = path.read_bytes()
    original = path.with_suffix(".orig").read_bytes()
    if _machine_bound(path):
        with pytest.raises(MismatchError, match="machine-bound"):
            llmzip.decompress(blob, model=tiny_model)
        return
    assert llmzip.decompress(blob, model=tiny_model) == original


NAMED = ["smollm2-135m", "qwen2.5-coder-1.5b"]
MODELS_DIR = Path(__file__).parent / "golden" / "models"


def _installed(name: str) -> str:
    """The path of a named model, or skip (CI installs the default model only)."""
    from llmzip import model as models
    from llmzip.errors import ModelError

    try:
        return str(models.resolve(name))
    except ModelError:
        if name == models.DEFAULT_MODEL and os.environ.get("CI"):
            raise
        pytest.skip(f"{name} is not installed (llmzip model fetch {name})")


@pytest.mark.model
@pytest.mark.parametrize("name", NAMED)
def test_named_model_golden_file_decodes(name):
    """A small file made with each named model at default settings (make_golden.py --models)
    decodes; the large model's also with no SIMD, oneDNN at SSE4.1, generic numba kernels and
    one thread (issue 26)."""
    path = MODELS_DIR / f"{name}.llmz"
    original = path.with_suffix(".orig").read_bytes()
    model = _installed(name)
    assert llmzip.decompress(path.read_bytes(), model=model) == original
    if name != "smollm2-135m":
        env = subprocess_env(model, ATEN_CPU_CAPABILITY="default", ONEDNN_MAX_CPU_ISA="SSE41",
                             NUMBA_CPU_NAME="generic")
        done = subprocess.run([sys.executable, "-m", "llmzip", "decompress", "-c", "-q",
                               "--threads", "1", str(path)], capture_output=True, env=env,
                              timeout=1500)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        assert done.stdout == original
