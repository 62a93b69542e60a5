"""The engine's converted form of a model in the cache, its fingerprints, and what the cache
holds.

A GGUF file is converted once into the engine's own form (engine/exact.py: int8 matrices with
their scales, float32 norms): ``config.json``, ``tokenizer.json``, ``engine.safetensors`` and
``fingerprint``, keyed by the GGUF's SHA-256. Its tensors are dequantised and quantised one
layer at a time, so converting never holds the model in float32. Entries are written to a
temporary directory and renamed into place, so two processes converting at once cannot leave a
corrupt entry.

The fingerprint (SHA-256 of the engine's tensors, the model's configuration and the tokenizer)
goes into each file's header; a decoder with a different model refuses to decode. Files of
formats 1-2 (``--portable``) carry the fingerprint of the float32 weights
(:func:`legacy_fingerprint`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from llmzip.cache import cache_dir
from llmzip.engine.llama import LlamaConfig
from llmzip.errors import ModelError
from llmzip.model.catalog import MODELS, sha256_file
from llmzip.model.gguf import GGUFWeights, config_and_tokenizer
from llmzip.progress import progress_bar

FINGERPRINT_BYTES = 8  # of the SHA-256, stored in every header
CONVERTED_FORMAT = "e1"  # the engine's converted form (bump when it changes)
ENGINE_TAG = b"llmzip exact engine 1"


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



def converted_dir(gguf: Path) -> Path:
    """The converted cache entry of a GGUF file, creating it on first use (atomically)."""
    key = sha256_file(gguf)[:32]
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

    from llmzip.engine.weights import quantize_model

    hf_config, tokenizer = config_and_tokenizer(gguf)
    config = LlamaConfig.from_hf(hf_config)
    weights = GGUFWeights(gguf, config)
    with progress_bar(config.num_layers, f"convert {gguf.name}", unit="layer") as bar:
        tensors = quantize_model(config, weights.__getitem__, bar.update)
    out.mkdir(parents=True)
    save_file(tensors, str(out / "engine.safetensors"))
    (out / "config.json").write_text(json.dumps(hf_config, indent=1, default=str))
    tokenizer.save(str(out / "tokenizer.json"))  # as llmzip 0.1 did: its fingerprints hold
    fp = engine_fingerprint(config, tensors, (out / "tokenizer.json").read_bytes())
    (out / "fingerprint").write_text(fp.hex())



def installed() -> Iterator[tuple[str, Path, int, int]]:
    """(name or file, path, bytes of the GGUF file, bytes of its converted forms) of every
    model in the cache."""
    root = cache_dir()
    for gguf in sorted((root / "models").glob("*.gguf")):
        name = next((m.name for m in MODELS.values() if m.file == gguf.name), gguf.name)
        key = sha256_file(gguf)[:32]
        converted = sum(f.stat().st_size for d in (root / "converted").glob(f"{key}-*")
                        for f in d.rglob("*") if f.is_file())
        yield name, gguf, gguf.stat().st_size, converted



def remove(name: str) -> int:
    """Delete a model and its converted forms from the cache; bytes freed."""
    for found, gguf, size, converted in installed():
        if found == name or gguf.name == name:
            size += converted
            key = sha256_file(gguf)[:32]
            for d in (cache_dir() / "converted").glob(f"{key}-*"):
                shutil.rmtree(d, ignore_errors=True)
            gguf.unlink()
            return size
    raise ModelError(f"model {name} is not installed")

