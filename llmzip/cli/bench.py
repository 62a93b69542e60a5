"""Measurements for ``llmzip bench``: llmzip against gzip, bzip2, xz, zstd and brotli on the
same bytes. A library the command line calls (as zstd's benchzstd.c is "called by zstdcli"):
no click, no import of main.py; the table and the plot are report.py's.

Every compressor compresses and decompresses the input in memory, in this process, and the
round trip is checked. Measured per compressor: sizes, bits per byte, compress/decompress
throughput (and tokens/s for llmzip), and the process's peak resident memory during its run.
Published figures (records.py: ``PUBLISHED``, sources in ``PUBLISHED_SOURCES``) are added as
reference rows, marked "published", when an input is recognised (by sha256) as the file they
were measured on.

zstandard and brotli (and rich, matplotlib for report.py) come with the ``bench`` extra:
:func:`require_extra` says so in one line when they are missing.
"""

from __future__ import annotations

import bz2
import gc
import gzip
import hashlib
import importlib.util
import io
import lzma
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from llmzip.cli.records import LLMZIP, PUBLISHED, Record
from llmzip.codec import stream
from llmzip.codec.settings import Settings
from llmzip.errors import FormatError, LlmzipError
from llmzip.progress import peak_rss_mb, progress_bar

EXTRA = ("zstandard", "brotli", "rich")  # what `pip install 'llmzip[bench]'` brings
PLOT_EXTRA = ("matplotlib",)


def require_extra(plot: bool = False) -> None:
    """LlmzipError (one line) when a module of the ``bench`` extra is not installed."""
    missing = [m for m in (*EXTRA, *(PLOT_EXTRA if plot else ()))
               if importlib.util.find_spec(m) is None]
    if missing:
        raise LlmzipError(f"bench needs {', '.join(missing)}: "
                          "pip install 'llmzip[bench]'")


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


def peak_resettable() -> bool:
    """Whether every peak reset so far worked (the table's footnote says which peak it is)."""
    return bool(_peak_resets) and all(_peak_resets)


# ---------------------------------------------------------------------------------------------
# Progress


class _Progress:
    """tqdm bars on stderr when enabled and stderr is a terminal; otherwise does nothing."""

    def __init__(self, enabled: bool, steps: int) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._outer = None
        if self.enabled:
            self._outer = progress_bar(steps, "", unit="run", position=0)

    def step(self, desc: str) -> None:
        if self._outer is not None:
            self._outer.set_description(desc)

    def done(self) -> None:
        if self._outer is not None:
            self._outer.update(1)

    @contextmanager
    def bytes_bar(self, total: int, desc: str) -> Iterator[stream.Progress | None]:
        if not self.enabled:
            yield None
            return
        bar = progress_bar(total, desc, position=1)
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


def load_model(settings: Settings) -> float:
    """Load (and cache) the model the settings name; returns the seconds it took."""
    from llmzip.numeric.products import configure

    start = time.perf_counter()
    configure(settings.device, settings.threads)
    stream.load_model(settings.model, settings.device)
    return time.perf_counter() - start


def measure_llmzip(data: bytes, settings: Settings, path: str, label: str,
                   progress: _Progress | None = None) -> Record:
    """Compress and decompress ``data`` with llmzip (model already loaded: not timed)."""
    progress = progress or _Progress(False, 0)
    gc.collect()
    _reset_peak_rss()
    out = io.BytesIO()
    with progress.bytes_bar(len(data), f"{label}: llmzip compress") as cb:
        start = time.perf_counter()
        cstats = stream.compress_stream(io.BytesIO(data), out, settings, progress=cb)
        tc = time.perf_counter() - start
    blob = out.getvalue()
    back = io.BytesIO()
    td: float | None = None
    dtokens: float | None = None
    ok = False
    with progress.bytes_bar(len(data), f"{label}: llmzip decompress") as cb:
        try:
            start = time.perf_counter()
            dstats = stream.decompress_stream(io.BytesIO(blob), back, model=settings.model,
                                             progress=cb, threads=settings.threads,
                                             device=settings.device)
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


def run_bench(paths: Sequence[str], settings: Settings, limit: int | None = None,
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


def failed(records: Sequence[Record]) -> list[str]:
    """"label (compressor)" of every measured row whose round trip failed."""
    return [f"{r.label} ({r.compressor})" for r in records if r.measured and not r.roundtrip_ok]
