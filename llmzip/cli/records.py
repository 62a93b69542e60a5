"""What a ``llmzip bench`` row is: the :class:`Record` of one compressor on one input, and the
published reference figures. Shared by bench.py (which measures) and report.py (which shows)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

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
        """The record as a JSON-ready dict (bits per byte to 4 decimals, the other floats to
        4 significant digits: a slow speed keeps its digits)."""
        d = dataclasses.asdict(self)
        if d["bpb"] is not None:
            d["bpb"] = round(d["bpb"], 4)
        for key in ("compress_kbps", "decompress_kbps", "tokens_per_s",
                    "decompress_tokens_per_s", "peak_rss_mb"):
            if d[key] is not None:
                d[key] = significant(d[key], 4)
        return d


def significant(x: float, digits: int) -> float:
    """``x`` rounded to ``digits`` significant digits (0.0031234 -> 0.003123)."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


# Published bits per byte, keyed by the label of the whole file; sources below.
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
PUBLISHED_SOURCES = (
    "each system's authors, for the whole file (enwik8: the Large Text Compression Benchmark, "
    "mattmahoney.net/dc/text.html; ts_zip: bellard.org/ts_zip)"
)
