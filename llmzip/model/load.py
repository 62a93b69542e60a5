"""Loading a model for the codec: resolve it, convert it if needed, build the engine (or, for
``--portable`` files of formats 1-2, the legacy engine) and the lossless tokenizer; one copy per
process."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from llmzip.engine.llama import Llama, LlamaConfig
from llmzip.errors import ModelError
from llmzip.format.mixconfig import MixConfig
from llmzip.model.catalog import MODELS, resolve
from llmzip.model.convert import (
    FINGERPRINT_BYTES,
    converted_dir,
    engine_fingerprint,
    legacy_fingerprint,
)
from llmzip.model.gguf import GGUFWeights, hf_weights
from llmzip.model.tokens import LosslessTokenizer
from llmzip.numeric.products import TIMED_ROWS


@dataclass
class LoadedModel:
    """Everything the codec needs from a model. ``fingerprint`` identifies it (8 bytes)."""

    llama: Llama
    tokens: LosslessTokenizer
    fingerprint: bytes
    start_token: int  # fed to every stream before its first token
    join_token: int  # fed to a stream that joins a primed frame (codec/predictor.py)
    legacy: bool  # the arithmetic of formats 1-2 (engine/legacy/), else engine/exact.py's
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
         legacy: bool = False, rows: Sequence[int] = TIMED_ROWS) -> LoadedModel:
    """Resolve, convert if needed, and load a model (cached per process). ``legacy``: the
    float32 weights and arithmetic that ``--portable`` files of formats 1-2 were made with.
    ``rows``: the activation rows per product the caller will run (the encoder's passes
    ahead, the decoder's steps), which the product kernel is chosen for by speed; the first
    load of a model in a process decides (every kernel gives the same bits)."""
    path = resolve(spec)
    key = (str(path.resolve()), device, legacy)
    if key not in _LOADED:
        try:
            _LOADED[key] = _load(path, device, legacy, tuple(rows))
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"cannot load the model {path}: {e}") from e
    return _LOADED[key]


def _load(path: Path, device: str, legacy: bool, rows: tuple[int, ...]) -> LoadedModel:
    gguf = path if path.is_file() else None
    directory = converted_dir(gguf) if gguf else path
    hf_config = json.loads((directory / "config.json").read_text())
    tokenizer_json = (directory / "tokenizer.json").read_bytes()
    tokens = LosslessTokenizer.from_file(directory / "tokenizer.json")
    config = LlamaConfig.from_hf(hf_config)
    if legacy:
        from llmzip.engine.legacy.engine import LegacyEngine

        weights = _legacy_weights(gguf, directory, config)
        fingerprint = legacy_fingerprint(weights, tokenizer_json)
        llama = Llama(config, LegacyEngine(config, device), weights)
    else:
        from llmzip.engine.exact import Engine
        from llmzip.engine.weights import quantize_model

        if gguf:
            from safetensors.torch import load_file

            tensors = load_file(str(directory / "engine.safetensors"))
            fingerprint = bytes.fromhex((directory / "fingerprint").read_text().strip())
        else:
            tensors = quantize_model(config, hf_weights(directory).__getitem__)
            fingerprint = engine_fingerprint(config, tensors, tokenizer_json)
        llama = Llama(config, Engine(config, device, rows), tensors)
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
        return hf_weights(directory)
    source = GGUFWeights(gguf, config)
    weights = {name: source[name] for name in source.names()}
    if config.tie_embeddings:
        weights.pop("lm_head.weight", None)
    return weights

