"""The output of ``llmzip bench``: the results table (rich) and the plot (matplotlib), from
the records that bench.py measured. rich and matplotlib come with the ``bench`` extra and are
imported only here, inside the functions that draw; numbers in the table keep three
significant digits, so a slow speed never reads "0.0".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TextIO

from llmzip.cli.records import LLMZIP, PUBLISHED_SOURCES, Record
from llmzip.codec.settings import DEFAULT_LEVEL


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def sig(value: float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits (0.00312, 12.3, 1,234); "-" for None. A
    slow speed never reads "0.0"."""
    if value is None:
        return "-"
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:.{digits - 1 - math.floor(math.log10(abs(value)))}f}"


def footnotes(peak_resettable: bool) -> list[str]:
    """The notes printed under the table: what each column measures."""
    if peak_resettable:
        rss = ("peak RSS: the whole process's resident-memory high-water mark (VmHWM) over "
               "that compressor's compress + decompress, reset before each one; it includes "
               "the Python interpreter, the input held in memory and llmzip's model once "
               "loaded (classic compressors run first on each file).")
    else:
        rss = ("peak RSS: the whole process's resident-memory high-water mark since it started "
               "(getrusage), read after each compressor; it never goes down, so a row "
               "inherits the peaks of the rows run before it.")
    return [
        "bits/byte = 8 x compressed bytes / input bytes (lower is better). KB/s = 1024 input "
        "bytes per second of wall time, in memory, single run; llmzip's model is loaded "
        "beforehand and not timed. tokens/s c/d: llmzip's tokens per second, compress / "
        "decompress.",
        rss,
        f"published: figures reported by {PUBLISHED_SOURCES}; not measured here (no speed "
        "or memory given).",
    ]


def render_table(records: Sequence[Record], stream: TextIO, notes: Sequence[str] = ()) -> None:
    """Print the results as a rich table, then ``notes`` (see :func:`footnotes`)."""
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    table = Table(title="llmzip bench", title_justify="left")
    for name, justify in (("file", "left"), ("compressor", "left"), ("source", "left"),
                          ("bytes", "right"), ("compressed", "right"), ("bits/byte", "right"),
                          ("comp KB/s", "right"), ("decomp KB/s", "right"),
                          ("tokens/s c/d", "right"), ("peak RSS MB", "right"),
                          ("round trip", "center")):
        table.add_column(name, justify=justify,  # type: ignore[arg-type]
                         no_wrap=name != "compressor")
    previous = None
    for r in records:
        if previous is not None and (r.file, r.label) != previous:
            table.add_section()
        previous = (r.file, r.label)
        tokens = (f"{sig(r.tokens_per_s)} / {sig(r.decompress_tokens_per_s)}"
                  if r.tokens_per_s is not None else "-")
        trip = "-" if r.roundtrip_ok is None else ("ok" if r.roundtrip_ok else "FAILED")
        cells = [r.label, r.compressor, "measured" if r.measured else "published",
                 f"{r.bytes:,}", _fmt(r.compressed_bytes, ","), _fmt(r.bpb, ".3f"),
                 sig(r.compress_kbps), sig(r.decompress_kbps), tokens, sig(r.peak_rss_mb),
                 trip]
        style = "" if r.measured else "dim italic"
        if r.compressor == LLMZIP:
            style = "bold"
        table.add_row(*(Text(c) for c in cells), style=style)

    def make_console(width: int | None) -> Console:
        return Console(file=stream, width=width, highlight=False, soft_wrap=False)

    console = make_console(None if stream.isatty() else 200)
    need = Measurement.get(console, console.options.update_width(1000), table).maximum
    if need > console.width:  # never truncate numbers: let a narrow terminal wrap lines
        console = make_console(need)
    console.print(table)
    for note in notes:
        console.print(Text(f"* {note}"), style="dim", width=min(console.width, 110))


def _spread(ys: Sequence[float], gap: float) -> list[float]:
    """Label heights near ``ys`` (in their order) at least ``gap`` apart."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    out = list(ys)
    for a, b in zip(order, order[1:]):
        out[b] = max(out[b], out[a] + gap)
    return out


def _ours(r: Record) -> bool:
    """llmzip's row: "llmzip", or "llmzip -N" for one of its levels."""
    return r.compressor.split(" ")[0] == LLMZIP


def plot(records: Sequence[Record], path: str) -> None:
    """Bits per byte against compress throughput (log x), one panel per input. Published
    references, which have no speed, are hollow markers in a strip at the left."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = list(dict.fromkeys(r.label for r in records))
    fig = Figure(figsize=(6.5 * len(labels), 5.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(labels), squeeze=False)[0]
    measured = dict.fromkeys(r.compressor for r in records if r.measured and not _ours(r))
    colors = {name: f"C{i}" for i, name in enumerate([LLMZIP, *measured])}
    for ax, label in zip(axes, labels):
        rows = [r for r in records if r.label == label]
        measured = [r for r in rows if r.measured and r.compress_kbps and r.bpb is not None]
        refs = [r for r in rows if not r.measured and r.bpb is not None]
        xs = [r.compress_kbps for r in measured]
        lo, hi = (min(xs), max(xs)) if xs else (1.0, 10.0)
        y_span = max([r.bpb for r in rows if r.bpb is not None] + [1.0])
        by_speed = sorted(measured, key=lambda r: r.compress_kbps)
        ladder = [r for r in by_speed if _ours(r)]
        if len(ladder) > 1:  # levels of llmzip (compressor "llmzip -N"): one line through them
            ax.plot([r.compress_kbps for r in ladder], [r.bpb for r in ladder],
                    color=colors[LLMZIP], linewidth=0.8, zorder=2)
        for r, nxt in zip(by_speed, [*by_speed[1:], None]):
            # a close right neighbour (in both axes) gets the right side: label this one left
            left = (nxt is not None and nxt.compress_kbps < 5 * r.compress_kbps
                    and abs(nxt.bpb - r.bpb) < 0.08 * y_span)
            name = r.compressor
            if len(ladder) > 1 and _ours(r):  # the ends and the default level, by number
                name, left = name.split(" ", 1)[1], False
                if name == f"-{DEFAULT_LEVEL}":
                    name += " (default)"
                elif r is not ladder[0] and r is not ladder[-1]:
                    name = ""
            ax.scatter(r.compress_kbps, r.bpb, s=130 if _ours(r) else 60,
                       marker="*" if _ours(r) else "o",
                       color=colors[LLMZIP] if _ours(r) else colors.get(r.compressor, "k"),
                       zorder=3)
            if name:
                ax.annotate(name, (r.compress_kbps, r.bpb), textcoords="offset points",
                            xytext=(-6 if left else 6, 5), ha="right" if left else "left",
                            fontsize=8)
        if len(ladder) > 1:
            ax.annotate(f"{LLMZIP} levels", (ladder[-1].compress_kbps, ladder[-1].bpb),
                        textcoords="offset points", xytext=(10, -14), fontsize=8)
        if refs:
            ref_x = lo / 8
            ax.axvline(lo / 3, color="0.7", linestyle="--", linewidth=0.8)
            text_y = _spread([r.bpb for r in refs], 0.045 * y_span)
            for r, ty in zip(refs, text_y):
                ax.axhline(r.bpb, color="0.85", linestyle=":", linewidth=0.8, zorder=1)
                ax.scatter(ref_x, r.bpb, s=55, marker="D", facecolors="none",
                           edgecolors="0.3", zorder=3)
                ax.annotate(r.compressor.split(" (")[0], (ref_x, r.bpb), xytext=(ref_x * 1.3, ty),
                            fontsize=7, va="center", color="0.3")
            ax.text(ref_x, 1.0, "published\n(speed n/a)", transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=7, color="0.3")
            lo = ref_x
        ax.set_xscale("log")
        ax.set_xlim(lo / 2, hi * 4)
        ax.set_ylim(0, y_span * 1.1)
        ax.grid(True, which="both", alpha=0.25)
        size = rows[0].bytes if rows else 0
        ax.set_title(f"{label} ({size:,} bytes)", fontsize=10)
        ax.set_xlabel("compress throughput (KB/s, log scale)")
        ax.set_ylabel("bits per byte (lower is better)")
    has_refs = any(not r.measured for r in records)
    fig.suptitle("llmzip bench: bits per byte vs compress speed\nfilled: measured in this run"
                 + ("; hollow: published figures" if has_refs else ""), fontsize=11)
    fig.savefig(path, dpi=110)
