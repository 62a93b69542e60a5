"""Plot llmzip's level ladder against the classic compressors on one file: bits per byte
against compress speed (the README's figure, benchmarks/results/default.png).

    python benchmarks/plot_levels.py FILE LEVELS.txt OUT.png [--json OUT.json]

LEVELS.txt is what benchmarks/levels.sh printed for FILE (its lines ``-N bytes bpb
compress_s KB/s decompress_s KB/s peak_MB ok``; ``-`` for a figure not measured); the
classic compressors are measured here, in memory (llmzip.bench), and the published figures
added as in ``llmzip bench``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llmzip.cli import bench, report


def _number(text: str) -> float | None:
    return None if text == "-" else float(text)


def ladder(path: str, label: str, size: int, lines: list[str]) -> list[bench.Record]:
    rows = []
    for line in lines:
        parts = line.split()
        if not parts or not parts[0].startswith("-") or len(parts) != 9:
            continue
        level, packed, bpb, _, ckb, _, dkb, peak, ok = parts
        rows.append(bench.Record(path, label, f"{bench.LLMZIP} {level}", True, size,
                                 int(packed), float(bpb), float(ckb), _number(dkb), None, None,
                                 float(peak), None if ok == "-" else ok == "ok"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("levels")
    ap.add_argument("out")
    ap.add_argument("--json")
    args = ap.parse_args()
    data = Path(args.file).read_bytes()
    label = bench.label_for(args.file, len(data), len(data))
    records = ladder(args.file, label, len(data), Path(args.levels).read_text().splitlines())
    for name, compress, decompress in bench.CLASSIC:
        records.append(bench.measure_classic(name, compress, decompress, data, args.file,
                                             label))
    records += bench.published_records(args.file, label)
    report.plot(records, args.out)
    if args.json:
        Path(args.json).write_text(json.dumps([r.to_json() for r in records], indent=2) + "\n")
    for r in records:
        print(r.compressor, r.bpb and round(r.bpb, 4), r.compress_kbps)


if __name__ == "__main__":
    main()
