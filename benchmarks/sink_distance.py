"""How the LM's cost grows when the attention sinks sit far behind the text (measuring only).

    python benchmarks/sink_distance.py [FILE] [--at 20000] [--tokens 1500]

Feeds the start token and the file's first three tokens (the sinks of a stream) at positions
0..3, then TOKENS tokens of the file from token AT at positions G+4, G+5, ..., for several gaps
G, through transformers' full-sequence forward pass (float32), and prints the mean bits per
token of the last 1000. llama.py keeps sinks at their first positions while the query goes up
to twice the window before a rebase, so the window must keep 2W within the model's trained
positions (llama.longest_window).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from llmzip import model as models
from llmzip.model import convert


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file", nargs="?", default="../shared/data/alice29.txt")
    ap.add_argument("--at", type=int, default=20000)
    ap.add_argument("--tokens", type=int, default=1500)
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM

    loaded = models.load()
    directory = convert.converted_dir(models.resolve(None))
    lm = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    ids = loaded.tokens.encode(Path(args.file).read_bytes()).astype(np.int64)
    sinks = [loaded.start_token, *ids[:3].tolist()]
    chunk = ids[args.at : args.at + args.tokens].tolist()
    target = torch.tensor(chunk[1:])
    for gap in (None, 0, 4000, 6500, 8000, 10000, 14000):
        if gap is None:  # no sinks at all
            seq, pos = chunk, list(range(len(chunk)))
        else:
            seq, pos = sinks + chunk, [0, 1, 2, 3] + [gap + 4 + i for i in range(len(chunk))]
        with torch.no_grad():
            logits = lm(torch.tensor(seq)[None], position_ids=torch.tensor(pos)[None]).logits
        logp = torch.log_softmax(logits[0, len(seq) - len(chunk) : -1].float(), -1)
        bits = -logp[torch.arange(len(target)), target] / np.log(2)
        label = "no sinks" if gap is None else f"sinks {gap + len(chunk)} positions back at most"
        print(f"{label}: {float(bits[-1000:].mean()):.4f} bits/token (last 1000)", flush=True)


if __name__ == "__main__":
    main()
