"""``llmzip bench``: llmzip against gzip, bzip2, xz, zstd and brotli on the same bytes.

Every compressor compresses and decompresses the input in memory, in this process, and the
round trip is checked. Reported per compressor: sizes, bits per byte, compress/decompress
throughput (and tokens/s for llmzip), and the process's peak resident memory during its run.
Published figures (../shared/data/README.md) are added as reference rows, marked "published",
when an input is recognised (by sha256) as the file they were measured on.
"""

from __future__ import annotations

import bz2
import dataclasses
import gc
import gzip
import hashlib
import io
import json
import lzma
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import click

from llmzip import codec
from llmzip.errors import FormatError, LlmzipError
from llmzip.options import settings_from, settings_options


@dataclass(frozen=True)
class KnownFile:
    """A benchmark file recognised by its sha256 (or, with no hash known, by size and name)."""

    name: str
    size: int
    sha256: str | None


KNOWN_FILES: tuple[KnownFile, ...] = (
    KnownFile("alice29.txt", 152_089,
              "7467306ee0feed4971260f3c87421154a05be571d944e9cb021a5713700c38f0"),
    KnownFile("enwik6", 1_000_000,
              "369b688978f649681136198fb96db14c1616756260c55fb4b65e9bc049552cad"),
    KnownFile("enwik8", 100_000_000,
              "2b49720ec4d78c3c9fabaee6e4179a5e997302b3a70029f30f2d582218c024a8"),
    KnownFile("enwik9", 1_000_000_000, None),  # hash not at hand: size + name
)

# Published bits per byte (../shared/data/README.md), keyed by the label of the whole file.
PUBLISHED: dict[str, tuple[tuple[str, float], ...]] = {
    "alice29.txt": (
        ("gzip -9", 2.850), ("bzip2 -9", 2.272), ("xz -9", 2.551), ("cmix v21", 1.635),
        ("ts_zip (RWKV 169M)", 1.142), ("Nacrith (SmolLM2-135M+n-gram+bias)", 0.918),
    ),
    "enwik8": (
        ("gzip -9", 2.916), ("bzip2 -9", 2.32), ("xz -9", 1.989), ("cmix v21", 1.170),
        ("ts_zip (RWKV 169M)", 1.106), ("Nacrith (SmolLM2-135M+n-gram+bias)", 0.939),
    ),
}


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def _bzip2(data: bytes) -> bytes:
    return bz2.compress(data, compresslevel=9)


def _xz(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ, preset=9)


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=19).compress(data)


def _unzstd(blob: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().decompress(blob)


def _brotli(data: bytes) -> bytes:
    import brotli

    return brotli.compress(data, quality=11)


def _unbrotli(blob: bytes) -> bytes:
    import brotli

    return brotli.decompress(blob)


Transform = Callable[[bytes], bytes]

# (name, compress, decompress), in the order of the table.
CLASSIC: tuple[tuple[str, Transform, Transform], ...] = (
    ("gzip -9", _gzip, gzip.decompress),
    ("bzip2 -9", _bzip2, bz2.decompress),
    ("xz -9", _xz, lzma.decompress),
    ("zstd -19", _zstd, _unzstd),
    ("brotli -q 11", _brotli, _unbrotli),
)
LLMZIP = "llmzip"


@dataclass
class Record:
    """One row: a compressor measured on one input, or a published reference figure."""

    file: str
    label: str
    compressor: str
    measured: bool
    bytes: int
    compressed_bytes: int | None = None
    bpb: float | None = None
    compress_kbps: float | None = None
    decompress_kbps: float | None = None
    tokens_per_s: float | None = None  # compression tokens/s (llmzip only)
    decompress_tokens_per_s: float | None = None
    peak_rss_mb: float | None = None
    roundtrip_ok: bool | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict (floats rounded to meaningful digits)."""
        d = dataclasses.asdict(self)
        for key, digits in (("bpb", 4), ("compress_kbps", 3), ("decompress_kbps", 3),
                            ("tokens_per_s", 2), ("decompress_tokens_per_s", 2),
                            ("peak_rss_mb", 1)):
            if d[key] is not None:
                d[key] = round(d[key], digits)
        return d


# ---------------------------------------------------------------------------------------------
# Recognising inputs


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    """sha256 of a file, read in chunks (never whole into memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def identify(path: str, size: int | None = None) -> KnownFile | None:
    """The known benchmark file at ``path``, if any. Only files of a known size are hashed."""
    size = os.path.getsize(path) if size is None else size
    digest: str | None = None
    for known in KNOWN_FILES:
        if known.size != size:
            continue
        if known.sha256 is None:
            if known.name in os.path.basename(path):
                return known
            continue
        if digest is None:
            digest = sha256_file(path)
        if digest == known.sha256:
            return known
    return None


def label_for(path: str, size: int, used: int, known: KnownFile | None = None) -> str:
    """Display name: the known name (else the base name), with ``[:N]`` for a prefix."""
    name = known.name if known is not None else os.path.basename(path) or path
    return name if used >= size else f"{name}[:{used}]"


# ---------------------------------------------------------------------------------------------
# Memory


_peak_resets: list[bool] = []  # outcome of every reset in this process (for the footnote)


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (Linux clear_refs 5); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        _peak_resets.append(False)
        return False
    _peak_resets.append(True)
    return True


def peak_rss_mb() -> float:
    """The process's resident-set high-water mark in MiB (VmHWM, else getrusage)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


# ---------------------------------------------------------------------------------------------
# Progress


class _Progress:
    """tqdm bars on stderr when enabled and stderr is a terminal; otherwise does nothing."""

    def __init__(self, enabled: bool, steps: int) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._outer = None
        if self.enabled:
            from tqdm import tqdm

            self._tqdm = tqdm
            self._outer = tqdm(total=steps, unit="run", file=sys.stderr, leave=False,
                               dynamic_ncols=True, position=0)

    def step(self, desc: str) -> None:
        if self._outer is not None:
            self._outer.set_description(desc)

    def done(self) -> None:
        if self._outer is not None:
            self._outer.update(1)

    @contextmanager
    def bytes_bar(self, total: int, desc: str) -> Iterator[codec.Progress | None]:
        if not self.enabled:
            yield None
            return
        bar = self._tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                         file=sys.stderr, leave=False, dynamic_ncols=True, position=1)
        try:
            yield bar.update
        finally:
            bar.close()

    def close(self) -> None:
        if self._outer is not None:
            self._outer.close()


# ---------------------------------------------------------------------------------------------
# Measuring


def _kbps(n: int, seconds: float | None) -> float | None:
    if seconds is None:
        return None
    return n / 1024 / max(seconds, 1e-9)


def measure_classic(name: str, compress: Transform, decompress: Transform, data: bytes,
                    path: str, label: str) -> Record:
    """Compress and decompress ``data`` in memory with one classic compressor."""
    gc.collect()
    _reset_peak_rss()
    start = time.perf_counter()
    blob = compress(data)
    tc = time.perf_counter() - start
    td: float | None = None
    try:
        start = time.perf_counter()
        ok = decompress(blob) == data
        td = time.perf_counter() - start
    except Exception:  # a library failing on its own output: report it, do not abort
        ok = False
    return Record(path, label, name, True, len(data), len(blob), 8 * len(blob) / len(data),
                  _kbps(len(data), tc), _kbps(len(data), td), None, None, peak_rss_mb(), ok)


def load_model(settings: codec.Settings) -> float:
    """Load (and cache) the model the settings name; returns the seconds it took."""
    from llmzip.numerics import numerics_for

    start = time.perf_counter()
    numerics_for(settings).load_model(settings.model)
    return time.perf_counter() - start


def measure_llmzip(data: bytes, settings: codec.Settings, path: str, label: str,
                   progress: _Progress | None = None) -> Record:
    """Compress and decompress ``data`` with llmzip (model already loaded: not timed)."""
    progress = progress or _Progress(False, 0)
    gc.collect()
    _reset_peak_rss()
    out = io.BytesIO()
    with progress.bytes_bar(len(data), f"{label}: llmzip compress") as cb:
        start = time.perf_counter()
        cstats = codec.compress_stream(io.BytesIO(data), out, settings, progress=cb)
        tc = time.perf_counter() - start
    blob = out.getvalue()
    back = io.BytesIO()
    td: float | None = None
    dtokens: float | None = None
    ok = False
    with progress.bytes_bar(len(data), f"{label}: llmzip decompress") as cb:
        try:
            start = time.perf_counter()
            dstats = codec.decompress_stream(io.BytesIO(blob), back, model=settings.model,
                                             progress=cb)
            td = time.perf_counter() - start
            dtokens = dstats.tokens / max(td, 1e-9)
            ok = back.getvalue() == data
        except FormatError:  # a checksum or decoding failure: report it, do not abort
            ok = False
    return Record(path, label, LLMZIP, True, len(data), len(blob), 8 * len(blob) / len(data),
                  _kbps(len(data), tc), _kbps(len(data), td), cstats.tokens / max(tc, 1e-9),
                  dtokens, peak_rss_mb(), ok)


def published_records(path: str, label: str) -> list[Record]:
    """Reference rows for an input labelled as a whole known file (none for prefixes)."""
    known = next((k for k in KNOWN_FILES if k.name == label), None)
    if known is None:
        return []
    return [Record(path, label, system, False, known.size, bpb=bpb)
            for system, bpb in sorted(PUBLISHED.get(label, ()), key=lambda r: -r[1])]


def _read_input(path: str, limit: int | None) -> tuple[bytes, int]:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        data = f.read() if limit is None else f.read(limit)
    if not data:
        raise LlmzipError(f"{path}: empty input, nothing to measure")
    return data, size


def run_bench(paths: Sequence[str], settings: codec.Settings, limit: int | None = None,
              show_progress: bool = False) -> list[Record]:
    """Measure llmzip and the classic compressors on each file (or its first ``limit``
    bytes); returns the measured records followed, per file, by any published ones."""
    for path in paths:  # fail before any long run on a missing or unreadable file
        with open(path, "rb"):
            pass
    load_model(settings)
    progress = _Progress(show_progress, len(paths) * (len(CLASSIC) + 1))
    records: list[Record] = []
    try:
        for path in paths:
            data, size = _read_input(path, limit)
            label = label_for(path, size, len(data), identify(path, size))
            rows: list[Record] = []
            for name, comp, decomp in CLASSIC:  # classic ones first: the model is resident
                progress.step(f"{label}: {name}")
                rows.append(measure_classic(name, comp, decomp, data, path, label))
                progress.done()
            progress.step(f"{label}: llmzip")
            rows.insert(0, measure_llmzip(data, settings, path, label, progress))
            progress.done()
            records += rows + published_records(path, label)
            del data
    finally:
        progress.close()
    return records


# ---------------------------------------------------------------------------------------------
# Output


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


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
        "published: figures from ../shared/data/README.md for the whole file, not measured "
        "here (no speed or memory given).",
    ]


def render_table(records: Sequence[Record], stream: TextIO) -> None:
    """Print the results as a rich table with its footnotes."""
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
        tokens = (f"{r.tokens_per_s:.0f} / {_fmt(r.decompress_tokens_per_s, '.0f')}"
                  if r.tokens_per_s is not None else "-")
        trip = "-" if r.roundtrip_ok is None else ("ok" if r.roundtrip_ok else "FAILED")
        cells = [r.label, r.compressor, "measured" if r.measured else "published",
                 f"{r.bytes:,}", _fmt(r.compressed_bytes, ","), _fmt(r.bpb, ".3f"),
                 _fmt(r.compress_kbps, ",.1f"), _fmt(r.decompress_kbps, ",.1f"), tokens,
                 _fmt(r.peak_rss_mb, ",.0f"), trip]
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
    for note in footnotes(bool(_peak_resets) and all(_peak_resets)):
        console.print(Text(f"* {note}"), style="dim", width=min(console.width, 110))


def _spread(ys: Sequence[float], gap: float) -> list[float]:
    """Label heights near ``ys`` (in their order) at least ``gap`` apart."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    out = list(ys)
    for a, b in zip(order, order[1:]):
        out[b] = max(out[b], out[a] + gap)
    return out


def plot(records: Sequence[Record], path: str) -> None:
    """Bits per byte against compress throughput (log x), one panel per input. Published
    references, which have no speed, are hollow markers in a strip at the left."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = list(dict.fromkeys(r.label for r in records))
    fig = Figure(figsize=(6.5 * len(labels), 5.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(labels), squeeze=False)[0]
    colors = {name: f"C{i}" for i, name in enumerate([LLMZIP, *(c[0] for c in CLASSIC)])}
    for ax, label in zip(axes, labels):
        rows = [r for r in records if r.label == label]
        measured = [r for r in rows if r.measured and r.compress_kbps and r.bpb is not None]
        refs = [r for r in rows if not r.measured and r.bpb is not None]
        xs = [r.compress_kbps for r in measured]
        lo, hi = (min(xs), max(xs)) if xs else (1.0, 10.0)
        y_span = max([r.bpb for r in rows if r.bpb is not None] + [1.0])
        by_speed = sorted(measured, key=lambda r: r.compress_kbps)
        for r, nxt in zip(by_speed, [*by_speed[1:], None]):
            # a close right neighbour (in both axes) gets the right side: label this one left
            left = (nxt is not None and nxt.compress_kbps < 5 * r.compress_kbps
                    and abs(nxt.bpb - r.bpb) < 0.08 * y_span)
            ax.scatter(r.compress_kbps, r.bpb, s=130 if r.compressor == LLMZIP else 60,
                       marker="*" if r.compressor == LLMZIP else "o",
                       color=colors.get(r.compressor, "k"), zorder=3)
            ax.annotate(r.compressor, (r.compress_kbps, r.bpb), textcoords="offset points",
                        xytext=(-6 if left else 6, 5), ha="right" if left else "left",
                        fontsize=8)
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


# ---------------------------------------------------------------------------------------------
# Command


@click.command("bench", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, required=True, metavar="FILE...")
@click.option("--bytes", "limit", type=click.IntRange(1), metavar="N",
              help="Measure only the first N bytes of each file.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list (one record per compressor per file) on stdout; the "
              "table goes to stderr.")
@click.option("--plot", "plot_path", metavar="OUT.png", type=click.Path(dir_okay=False),
              help="Plot bits per byte against compress speed into OUT.png.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar; with --json no table.")
@settings_options
def bench_command(inputs: tuple[str, ...], limit: int | None, as_json: bool,
                  plot_path: str | None, quiet: bool, **options) -> None:
    """Compare llmzip with gzip, bzip2, xz, zstd and brotli on FILEs (round trips checked)."""
    from llmzip.cli import _run  # late: cli imports this module to register the command

    settings = settings_from(**options)

    def job() -> None:
        if plot_path and not os.path.isdir(os.path.dirname(os.path.abspath(plot_path))):
            raise LlmzipError(f"{plot_path}: no such directory for the plot")
        records = run_bench(inputs, settings, limit, show_progress=not quiet)
        if as_json:
            click.echo(json.dumps([r.to_json() for r in records], indent=2))
            if not quiet:
                render_table(records, sys.stderr)
        else:
            render_table(records, sys.stdout)
        if plot_path:
            plot(records, plot_path)
        failed = [f"{r.label} ({r.compressor})" for r in records
                  if r.measured and not r.roundtrip_ok]
        if failed:
            raise LlmzipError(f"round trip failed: {', '.join(failed)}")

    _run(job)
