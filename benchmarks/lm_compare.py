"""Bits per byte of a language model alone (issue 44, part 1): float32 reference, sliding window.

Self-contained on purpose: it uses transformers, gguf and torch only, none of llmzip's modules.
Each GGUF is loaded with transformers (``from_pretrained(dir, gguf_file=...)``), dequantised to
float32, and tokenised with the tokenizer stored in the same file.

Scoring. A text's bytes are decoded as UTF-8 and tokenised without special tokens; the ids must
decode back to the same bytes (checked, and reported). Before the text stands one start token,
which is free: the model's BOS if its tokenizer adds one by itself (Gemma), else its document
separator (``<|endoftext|>`` and kin, special tokens only; SmolLM2), else BOS. So the first text
token is costed given that start token alone, not under a uniform distribution. Each window is
``[start] + ids[a:b]`` with ``b - a <= window - 1``; windows advance by ``stride`` tokens and
score only the tokens not scored before, so a scored token sees the start token and between
``window - 1 - stride`` and ``window - 2`` text tokens before it (fewer in the first window).
``--no-restart`` drops the start token from every window but the first (then a window holds
``window`` text tokens). Cross-entropy is summed in float64 and reported as bits per byte.

Compute. MACs per token are those of every ``nn.Linear`` in the model, LM head included (an
embedding lookup costs none); attention's own MACs (scores and weighted sum, 2 * heads *
head_dim * context per layer, a sliding-window layer's context capped at its window) are given
apart, at the full window.

Example (from the repository root)::

    python benchmarks/lm_compare.py \\
        --model gemma-3-270m=/tmp/gemma/gemma-3-270m-q4_k_m.gguf \\
        --model smollm2-135m=~/.cache/llmzip/models/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --text alice29=/work/shared/data/alice29.txt --text enwik6=/work/shared/data/enwik6 \\
        --text README=README.md --max-bytes 20000 --compare smollm2-135m,gemma-3-270m
"""

from __future__ import annotations

import argparse
import gc
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

_SEPARATORS = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<s>")


@dataclass
class Row:
    model: str
    text: str
    nbytes: int
    ntokens: int
    bits: float
    first_bits: float
    round_trip: str
    linear_macs: int
    attn_macs: int
    seconds: float
    ref_tokens: str = ""

    @property
    def tokens_per_byte(self) -> float:
        return self.ntokens / self.nbytes

    @property
    def bpb(self) -> float:
        return self.bits / self.nbytes


def named_path(arg: str) -> tuple[str, Path]:
    if "=" not in arg:
        path = Path(arg).expanduser()
        return path.stem, path
    name, _, path = arg.partition("=")
    return name, Path(path).expanduser()


def read_text(path: Path, max_bytes: int | None) -> tuple[bytes, str, str]:
    """The bytes (cut to max_bytes, and back to a whole UTF-8 character), the text, a note."""
    data = path.read_bytes()
    if max_bytes is not None:
        data = data[:max_bytes]
    note = ""
    for cut in range(4):
        try:
            text = data[: len(data) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        if cut:
            note = f"last {cut} byte(s) dropped: a split UTF-8 character"
        return data[: len(data) - cut], text, note
    raise SystemExit(f"{path}: not UTF-8")


def start_token(tok) -> int:
    """BOS if the tokenizer puts one first by itself, else a special document separator."""
    bos = tok.bos_token_id
    if bos is not None and tok.encode("a")[:1] == [bos]:
        return int(bos)
    vocab = tok.get_vocab()
    special = set(tok.all_special_ids)
    for name in _SEPARATORS:  # only special ones: Gemma's vocab has a plain `</s>`
        if vocab.get(name) in special:
            return int(vocab[name])
    return int(bos) if bos is not None else 0


def linear_macs(model: nn.Module) -> int:
    return sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))


def attention_macs(config, context: int) -> int:
    """Scores plus weighted sum, per token, with `context` keys (a sliding layer's capped)."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    layer_types = getattr(config, "layer_types", None) or (
        ["full_attention"] * config.num_hidden_layers)
    window = getattr(config, "sliding_window", None)
    total = 0
    for kind in layer_types:
        keys = min(context, window) if kind == "sliding_attention" and window else context
        total += 2 * heads * head_dim * keys
    return total


def softcap(config, logits: torch.Tensor) -> torch.Tensor:
    cap = getattr(config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


@torch.no_grad()
def window_bits(model, ids: list[int], scored_from: int, head_chunk: int) -> list[float]:
    """Bits of ids[scored_from:] given everything before them in `ids` (ids[0] is context)."""
    x = torch.tensor([ids], dtype=torch.long)
    hidden = model.get_decoder()(input_ids=x, use_cache=False).last_hidden_state[0]
    head = model.get_output_embeddings()
    targets = torch.tensor(ids[scored_from:], dtype=torch.long)
    out: list[float] = []
    for lo in range(0, len(targets), head_chunk):
        t = targets[lo: lo + head_chunk]
        h = hidden[scored_from - 1 + lo: scored_from - 1 + lo + len(t)]
        logits = softcap(model.config, head(h)).double()
        nats = torch.logsumexp(logits, -1) - logits.gather(1, t[:, None])[:, 0]
        out.extend((nats / math.log(2)).tolist())
    return out


def sliding_bits(model, ids: list[int], start: int, window: int, stride: int,
                 restart: bool, head_chunk: int) -> list[float]:
    """Bits of every id in `ids`, in order, with the start token before the first."""
    n = len(ids)
    bits: list[float] = []
    ctx = window - 1  # text tokens in the first window (or in every window with restart)
    end = min(n, ctx)
    bits += window_bits(model, [start, *ids[:end]], 1, head_chunk)
    while end < n:
        new_end = min(n, end + stride)
        if restart:
            a = max(0, new_end - ctx)
            seq = [start, *ids[a:new_end]]
            first = end - a + 1
        else:
            a = max(0, new_end - window)
            seq = ids[a:new_end]
            first = end - a
        bits += window_bits(model, seq, first, head_chunk)
        end = new_end
    assert len(bits) == n
    return bits


@torch.no_grad()
def self_check(model, ids: list[int], start: int, head_chunk: int) -> float:
    """Largest |bits difference| between the chunked head and the model's own full forward."""
    seq = [start, *ids[:64]]
    mine = torch.tensor(window_bits(model, seq, 1, head_chunk))
    logits = model(input_ids=torch.tensor([seq]), use_cache=False).logits[0, :-1].double()
    ref = (torch.logsumexp(logits, -1) - logits.gather(1, torch.tensor(seq[1:])[:, None])[:, 0])
    return float((mine - ref / math.log(2)).abs().max())


def load(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                 dtype=torch.float32)
    model.eval()
    return tok, model


def gguf_summary(path: Path) -> str:
    from collections import Counter

    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    counts = Counter(t.tensor_type.name for t in reader.tensors)
    return ", ".join(f"{k} x{v}" for k, v in counts.most_common())


def ref_compare(ref_path: Path, text: str, ids: list[int]) -> str:
    from tokenizers import Tokenizer

    ref = Tokenizer.from_file(str(ref_path)).encode(text, add_special_tokens=False).ids
    if ref == ids:
        return "same ids"
    diff = sum(a != b for a, b in zip(ref, ids)) + abs(len(ref) - len(ids))
    return f"differs: {len(ref)} ref tokens vs {len(ids)}, {diff} positions"


def table(rows: list[Row], window: int) -> str:
    lines = [
        "| model | text | bytes | tokens | tokens/byte | bits/byte | MACs/token | MACs/byte "
        f"| attn MACs/token @{window} | total MACs/byte |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        total = (r.linear_macs + r.attn_macs) * r.tokens_per_byte
        lines.append(
            f"| {r.model} | {r.text} | {r.nbytes} | {r.ntokens} | {r.tokens_per_byte:.4f} "
            f"| {r.bpb:.4f} | {r.linear_macs / 1e6:.1f}M "
            f"| {r.linear_macs * r.tokens_per_byte / 1e6:.1f}M | {r.attn_macs / 1e6:.1f}M "
            f"| {total / 1e6:.1f}M |")
    return "\n".join(lines)


def details(rows: list[Row]) -> str:
    lines = ["| model | text | first-token bits | round trip | vs reference tokenizer "
             "| seconds |", "|---|---|---:|---|---|---:|"]
    for r in rows:
        lines.append(f"| {r.model} | {r.text} | {r.first_bits:.2f} | {r.round_trip} "
                     f"| {r.ref_tokens or '-'} | {r.seconds:.0f} |")
    return "\n".join(lines)


def verdict(rows: list[Row], base: str, challenger: str, margin: float) -> str:
    by = {(r.model, r.text): r.bpb for r in rows}
    texts = [r.text for r in rows if r.model == base]
    parts, ok = [], True
    for t in texts:
        if (challenger, t) not in by:
            continue
        gain = 1 - by[(challenger, t)] / by[(base, t)]
        ok &= gain >= margin
        parts.append(f"{t}: {gain * 100:+.1f}%")
    word = "yes" if ok and parts else "no"
    return (f"{challenger} better than {base} by >= {margin * 100:.0f}% bits/byte on every text: "
            f"{word} ({', '.join(parts)}; positive = {challenger} smaller)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, metavar="NAME=GGUF",
                   help="a GGUF to measure (repeatable)")
    p.add_argument("--text", action="append", required=True, metavar="NAME=PATH",
                   help="a text to score (repeatable)")
    p.add_argument("--max-bytes", type=int, default=20000, help="score the first N bytes (0: all)")
    p.add_argument("--window", type=int, default=2048, help="positions per forward window")
    p.add_argument("--stride", type=int, default=1024, help="new tokens scored per window")
    p.add_argument("--no-restart", dest="restart", action="store_false",
                   help="no start token at the head of later windows")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--head-chunk", type=int, default=256, help="positions per LM-head matmul")
    p.add_argument("--ref-tokenizer", action="append", default=[], metavar="MODEL=tokenizer.json",
                   help="compare a model's token ids with this tokenizer.json's")
    p.add_argument("--compare", metavar="BASE,CHALLENGER", help="print the issue-44 verdict")
    p.add_argument("--margin", type=float, default=0.04)
    a = p.parse_args(argv)
    if not 0 < a.stride < a.window - 1:
        p.error("need 0 < stride < window - 1")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    texts = [named_path(t) for t in a.text]
    refs = dict(named_path(r) for r in a.ref_tokenizer)
    rows: list[Row] = []
    notes: list[str] = []
    for name, path in (named_path(m) for m in a.model):
        t0 = time.perf_counter()
        tok, model = load(path)
        start = start_token(tok)
        lin = linear_macs(model)
        attn = attention_macs(model.config, a.window)
        notes.append(f"- {name}: `{path.name}` ({path.stat().st_size} bytes; tensors "
                     f"{gguf_summary(path)}), vocab {model.config.vocab_size}, start token "
                     f"{start} `{tok.convert_ids_to_tokens(start)}`, loaded in "
                     f"{time.perf_counter() - t0:.0f} s")
        print(notes[-1], file=sys.stderr)
        for tname, tpath in texts:
            data, text, cut_note = read_text(tpath, a.max_bytes or None)
            ids = tok.encode(text, add_special_tokens=False)
            back = tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            rt = "exact" if back.encode("utf-8") == data else "MISMATCH"
            if cut_note:
                rt += f" ({cut_note})"
            ref = ref_compare(refs[name], text, ids) if name in refs else ""
            if tname == texts[0][0]:
                err = self_check(model, ids, start, a.head_chunk)
                notes.append(f"- {name}: chunked head vs full forward, max |bits diff| {err:.2e}")
                print(notes[-1], file=sys.stderr)
            t1 = time.perf_counter()
            bits = sliding_bits(model, ids, start, a.window, a.stride, a.restart, a.head_chunk)
            rows.append(Row(name, tname, len(data), len(ids), math.fsum(bits), bits[0], rt, lin,
                            attn, time.perf_counter() - t1, ref))
            print(f"{name} {tname}: {len(data)} bytes {len(ids)} tokens "
                  f"{rows[-1].bpb:.4f} bits/byte ({rows[-1].seconds:.0f} s)", file=sys.stderr)
        del model, tok
        gc.collect()
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"python {platform.python_version()}, threads {a.threads}, window {a.window}, "
          f"stride {a.stride}, restart {a.restart}\n")
    print(table(rows, a.window))
    print()
    print(details(rows))
    print()
    print("\n".join(notes))
    if a.compare:
        base, challenger = a.compare.split(",")
        print()
        print(verdict(rows, base, challenger, a.margin))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
