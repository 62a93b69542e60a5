"""What tests share besides fixtures: the sample text, the tiny seeded model and tokenizer
builders, and `invoke`, which runs the command line in this process as the console script does.

Import from here (``from tests.helpers import ...``); tests/conftest.py holds only fixtures.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ALICE = DATA / "alice29.txt"
PYTHON_LICENSE = Path(os.__file__).parent / "LICENSE.txt"  # ~14 KB of English, in most installs

# Small settings for CLI tests on the tiny model: fast, and more than one stream.
# numba's features of an AVX2-only x86 (NUMBA_CPU_FEATURES; numba would otherwise add the
# host's own features, AVX-512 included, to a named CPU)
HASWELL = "+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+popcnt"
OPTS = ["--context", "16", "--threads", "1", "--streams", "2"]

CORPUS = (
    "Alice was beginning to get very tired of sitting by her sister on the bank, and of "
    "having nothing to do: once or twice she had peeped into the book her sister was "
    "reading, but it had no pictures or conversations in it. <page>\n"
) * 4


def english_text() -> bytes:
    """A few KB of English prose for the real-model tests: alice29.txt from ../shared/data,
    or, in a checkout without it, Python's own LICENSE.txt (skip if neither is there)."""
    for path in (ALICE, PYTHON_LICENSE):
        if path.is_file():
            return path.read_bytes()
    pytest.skip("no English sample: neither ../shared/data/alice29.txt nor Python's LICENSE.txt")


def build_tokenizer(vocab_size: int = 320, full_alphabet: bool = True):
    """A small byte-level BPE tokenizer trained on CORPUS (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet() if full_alphabet else []
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet,
                                  special_tokens=["<|endoftext|>", "<esc>"], show_progress=False)
    tok.train_from_iterator([CORPUS], trainer)
    return tok


def build_model_dir(path: Path, seed: int = 0, layers: int = 2, kind: str = "llama") -> Path:
    """A tiny, seeded, randomly initialised Llama with build_tokenizer(), written as a Hugging
    Face model directory so tests use the real loading path. Same seed, same weights (the
    golden files of tests/golden were made with the default). ``kind="qwen2"``: a Qwen2 with
    q/k/v biases, an untied head and random norm gains."""
    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    tok.save(str(path / "tokenizer.json"))
    vocab = tok.get_vocab_size()
    hidden, heads, kv_heads, inter = 64, 4, 2, 128
    head_dim = hidden // heads
    qwen = kind == "qwen2"
    config = {
        "model_type": kind, "vocab_size": vocab, "hidden_size": hidden,
        "intermediate_size": inter, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "head_dim": head_dim,
        "rope_theta": 1e6 if qwen else 10000.0, "rms_norm_eps": 1e-6 if qwen else 1e-5,
        "tie_word_embeddings": not qwen,
        "max_position_embeddings": 16384, "bos_token_id": 0, "eos_token_id": 0,
    }
    (path / "config.json").write_text(json.dumps(config))
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = 0.08) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    w = {"model.embed_tokens.weight": rnd(vocab, hidden, scale=0.02),
         "model.norm.weight": torch.ones(hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = torch.ones(hidden)
        w[p + "post_attention_layernorm.weight"] = torch.ones(hidden)
        w[p + "self_attn.q_proj.weight"] = rnd(heads * head_dim, hidden)
        w[p + "self_attn.k_proj.weight"] = rnd(kv_heads * head_dim, hidden)
        w[p + "self_attn.v_proj.weight"] = rnd(kv_heads * head_dim, hidden)
        w[p + "self_attn.o_proj.weight"] = rnd(hidden, heads * head_dim)
        w[p + "mlp.gate_proj.weight"] = rnd(inter, hidden)
        w[p + "mlp.up_proj.weight"] = rnd(inter, hidden)
        w[p + "mlp.down_proj.weight"] = rnd(hidden, inter)
        if qwen:
            for n, size in (("q", heads), ("k", kv_heads), ("v", kv_heads)):
                w[p + f"self_attn.{n}_proj.bias"] = rnd(size * head_dim, scale=0.5)
            w[p + "input_layernorm.weight"] = 1 + rnd(hidden, scale=0.5)
            w[p + "post_attention_layernorm.weight"] = 1 + rnd(hidden, scale=0.5)
    if qwen:
        w["lm_head.weight"] = rnd(vocab, hidden, scale=0.05)
        w["model.norm.weight"] = 1 + rnd(hidden, scale=0.5)
    save_file(w, str(path / "model.safetensors"))
    return path


def invoke(argv: list[str], input: bytes | None = None):
    """Run ``llmzip ARGV`` in this process like the console script (main() resolves aliases
    and the default command); returns click's Result (exit_code, stdout_bytes, stderr)."""
    import click
    from click.testing import CliRunner

    from llmzip.cli.main import main

    cmd = click.Command("llmzip", callback=lambda: main(argv))
    return CliRunner().invoke(cmd, [], input=input, catch_exceptions=False)


def subprocess_env(model: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for ``python -m llmzip`` in a subprocess: this checkout on the path and,
    if given, LLMZIP_MODEL."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    if model is not None:
        env["LLMZIP_MODEL"] = model
    return env


def one_line_error(stderr: str) -> None:
    """An error is one line on stderr starting "llmzip: ", never a traceback."""
    assert stderr.startswith("llmzip: "), stderr
    assert stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr


class DyingWorker:
    """A parallel.py worker (picklable: it is built in spawned processes) that doubles numbers,
    and kills its own process on item ``die_on``, once if ``once`` (a marker file in ``where``
    remembers), else every time."""

    def __init__(self, die_on: int, where: str, once: bool) -> None:
        self.die_on, self.where, self.once = die_on, Path(where), once

    def __call__(self, item: int) -> int:
        marker = self.where / f"died-{item}"
        if item == self.die_on and not (self.once and marker.exists()):
            marker.touch()
            os._exit(9)
        return 2 * item
