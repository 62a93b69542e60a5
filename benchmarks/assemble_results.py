"""Assemble benchmarks/RESULTS.md from the results files in benchmarks/results/.

    python benchmarks/assemble_results.py [--results DIR] [--out FILE]
    python benchmarks/assemble_results.py --table BENCH.json    # `llmzip bench --json` as a table

benchmarks/run_suite.sh calls it last (and alone with --assemble-only). Every ``*.md`` and
``*.txt`` file in the results folder (but a RESULTS.md there) becomes one section of
RESULTS.md; JSON files and plots are data that sections show or name. A results file starts
with its front matter, lines ``# key: value`` (or ``<!-- key: value -->``), keys:

    title      the section's heading (a .md file without one takes its first heading)
    command    how the figures were made (one line each, in order)
    host       the machine: CPU kind and the flags that matter (avx2, avx512_vnni, amx)
    date       when
    note       a sentence shown under the header (one or more)
    image      a plot in the results folder, shown after the table

Then its body: markdown (tables, text), kept as it is. In a .txt file other ``#`` lines are
comments and are dropped, and the lines ``-N bytes bpb compress_s KB/s decompress_s KB/s
peak_MB ok`` that benchmarks/levels.sh prints become a table. Known files come in the order of
ORDER, any other after them by name (an ``*.md`` file another script writes is picked up as
it is).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEYS = ("title", "command", "host", "date", "note", "image")
ORDER = ("compressors", "alice29-levels", "models", "lm-compare", "kernels-host-alice",
         "kernels-host-alice10k", "kernels-avx2ref-alice3k", "kernel-rates",
         "profile-host-alice10k", "drafts", "parallel", "quant-study", "sink-distance",
         "mixer-qwen", "warm-start", "bombs")
_FRONT = re.compile(r"^(?:#\s*|<!--\s*)(" + "|".join(KEYS) + r")\s*:\s*(.*?)\s*(?:-->)?\s*$")
WIDTH = 96  # notes are wrapped at this width (tables, commands and the host line are not)
_LEVEL = re.compile(r"^-\d\s")

HEAD = """\
# Results

Written by `benchmarks/run_suite.sh` from the files in `benchmarks/results/` (one section per
file; `benchmarks/run_suite.sh --assemble-only` rebuilds this page without running anything):
edit the results files, not this page. Each section names its command, its host and its date.
Bits per byte count every byte of the container (header, frame records, checksums). The hosts
are 2-core VMs whose speed drifts by 10-25% from run to run: compare times within one table
only. History is in git; mixer ablations in [MIXING.md](MIXING.md), bad input in
[RELIABILITY.md](RELIABILITY.md), changes in [CHANGELOG.md](../CHANGELOG.md).
"""


def parse(path: Path) -> tuple[dict[str, list[str]], list[str]]:
    """(front matter, body lines) of a results file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    meta: dict[str, list[str]] = {}
    i = 0
    while i < len(lines):
        m = _FRONT.match(lines[i])
        if m:
            meta.setdefault(m.group(1), []).append(m.group(2))
        elif lines[i].strip():
            break
        i += 1
    body = lines[i:]
    if path.suffix == ".md" and "title" not in meta:
        for j, line in enumerate(body):
            if line.startswith("#"):
                meta["title"] = [line.lstrip("#").strip()]
                body = body[:j] + body[j + 1:]
                break
    return meta, body


def _levels_table(rows: list[str]) -> list[str]:
    out = ["| level | bytes | bits/byte | compress | decompress | peak RSS | round trip |",
           "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in rows:
        level, packed, bpb, cs, ckb, ds, dkb, peak, ok = row.split()

        def timed(s: str, kb: str) -> str:
            return "-" if s == "-" else f"{float(s):,.1f} s ({float(kb):.2f} KB/s)"

        out.append(f"| `{level}` | {int(packed):,} | {bpb} | {timed(cs, ckb)} | "
                   f"{timed(ds, dkb)} | {'-' if peak == '-' else f'{int(peak):,} MB'} | "
                   f"{'not checked' if ok == '-' else ok} |")
    return out


def body_markdown(path: Path, body: list[str]) -> list[str]:
    """The body as markdown: blocks separated by one blank line."""
    if path.suffix == ".md":
        lines, fenced = [], False
        for line in body:  # headings one level down, except in fenced code
            fenced ^= line.lstrip().startswith("```")
            lines.append("#" + line if line.startswith("#") and not fenced else line)
    else:
        lines, levels = [], []
        for line in body:
            if _LEVEL.match(line) and len(line.split()) == 9:
                levels.append(line)
                continue
            if levels:
                lines += ["", *_levels_table(levels), ""]
                levels = []
            if not line.startswith("#"):
                lines.append(line)
        if levels:
            lines += ["", *_levels_table(levels)]
    out: list[str] = []
    fenced = False
    for line in lines:
        table = line.startswith("|")
        fence = line.lstrip().startswith("```")
        if out and out[-1] and line.strip() and table != out[-1].startswith("|") \
                and not fenced and not fence:
            out.append("")  # a table and text next to each other need a blank line
        if line.strip() or fenced or (out and out[-1]):
            out.append(line.rstrip())
        fenced ^= fence
    while out and not out[-1]:
        out.pop()
    return out


def _wrap(text: str) -> str:
    return textwrap.fill(text, WIDTH, break_long_words=False, break_on_hyphens=False)


def section(path: Path) -> list[str]:
    meta, body = parse(path)
    title = meta.get("title", [path.stem])[0]
    out = [f"## {title}", ""]
    if meta.get("command"):
        out += ["```sh", *meta["command"], "```", ""]
    where = [f"Host: {meta['host'][0]}." if meta.get("host") else "",
             f"Date: {meta['date'][0]}." if meta.get("date") else "",
             f"File: `results/{path.name}`."]
    out += [" ".join(w for w in where if w), ""]
    if meta.get("note"):
        out += [_wrap(" ".join(meta["note"])), ""]
    out += body_markdown(path, body)
    for image in meta.get("image", []):
        out += ["", f"![{title}](results/{image})"]
    return [*out, ""]


def files(results: Path) -> list[Path]:
    found = [p for p in results.iterdir()
             if p.suffix in (".md", ".txt") and p.is_file() and p.name != "RESULTS.md"]
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(found, key=lambda p: (rank.get(p.stem, len(ORDER)), p.name))


def assemble(results: Path) -> str:
    paths = files(results)
    out = [HEAD]
    for p in paths:
        out += section(p)
    return "\n".join(out).rstrip() + "\n"


def bench_table(records: list[dict]) -> str:
    """`llmzip bench --json` records as one row per llmzip run: its size, bits per byte, times
    and memory, then the other compressors' bits per byte on the same bytes and the published
    figures."""
    classic = []
    for r in records:
        if r["measured"] and not r["compressor"].startswith("llmzip") \
                and r["compressor"] not in classic:
            classic.append(r["compressor"])
    head = ["file", "llmzip", "bits/byte", "compress", "decompress", "peak RSS", *classic,
            "published"]
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in records:
        if not (r["measured"] and r["compressor"].startswith("llmzip")):
            continue
        same = [o for o in records if o["label"] == r["label"]]

        def timed(kbps: float | None, n: int = r["bytes"]) -> str:
            return "-" if not kbps else f"{n / 1024 / kbps:,.1f} s ({kbps:.2f} KB/s)"

        bpb = {o["compressor"]: f"{o['bpb']:.3f}" for o in same if o["measured"]}
        published = ", ".join(f"{o['compressor']} {o['bpb']:.3f}" for o in same
                              if not o["measured"] and o["compressor"] not in classic)
        ok = {True: "", False: " (round trip FAILED)"}.get(r.get("roundtrip_ok"),
                                                            " (round trip not checked)")
        peak = f"{r['peak_rss_mb']:,.0f} MB" if r.get("peak_rss_mb") else "-"
        cells = [f"{r['label']} ({r['bytes']:,} B)",
                 f"`{r['compressor']}`: {r['compressed_bytes']:,} B{ok}",
                 f"**{r['bpb']:.4f}**", timed(r.get("compress_kbps")),
                 timed(r.get("decompress_kbps")), peak,
                 *(bpb.get(c, "") for c in classic), published or "-"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description="Assemble benchmarks/RESULTS.md from results files.")
    ap.add_argument("--results", type=Path, default=HERE / "results")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--table", type=Path, metavar="BENCH.json",
                    help="print this `llmzip bench --json` file as a markdown table, and stop")
    args = ap.parse_args()
    if args.table:
        sys.stdout.write(bench_table(json.loads(args.table.read_text(encoding="utf-8"))))
        return
    text = assemble(args.results)
    args.out.write_text(text, encoding="utf-8")
    print(f"{args.out}: {len(text.splitlines())} lines from {len(files(args.results))} "
          f"results files", file=sys.stderr)


if __name__ == "__main__":
    main()
