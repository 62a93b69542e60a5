#!/usr/bin/env bash
# The standard llmzip benchmark suite, run with the installed `llmzip`:
#   1. alice29.txt (whole) and the first 200,000 bytes of enwik6 at default settings,
#      against gzip/bzip2/xz/zstd/brotli and the published figures;
#   2. a streams sweep on alice29.txt (ratio against speed).
# Writes JSON, PNG plots and a sweep summary under benchmarks/results/. Takes a while with the
# default model on a CPU: every llmzip run compresses and decompresses.
#
#   benchmarks/run_suite.sh                      # from anywhere; paths are relative to the repo
#   STREAMS="8 32" benchmarks/run_suite.sh       # a shorter sweep
#   LLMZIP_DATA=/data benchmarks/run_suite.sh    # where alice29.txt and enwik6 are
#   LLMZIP_BENCH="python -m llmzip bench" ...    # another way to call the command
#   LLMZIP_RESULTS=/tmp/r ...                    # another output folder
# Settings for every run (e.g. --threads 2) can follow on the command line.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DATA=${LLMZIP_DATA:-../shared/data}
OUT=${LLMZIP_RESULTS:-benchmarks/results}
STREAMS=${STREAMS:-"8 16 32 64"}
read -r -a BENCH <<< "${LLMZIP_BENCH:-llmzip bench}"
EXTRA=("$@")

die() { echo "run_suite.sh: $*" >&2; exit 1; }

command -v "${BENCH[0]}" > /dev/null || die "${BENCH[0]} not found (install llmzip first)"
for f in alice29.txt enwik6; do
    [[ -f "$DATA/$f" ]] || die "$DATA/$f is missing (see ../shared/data/README.md)"
done
mkdir -p "$OUT"

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "llmzip: $(llmzip --version 2>/dev/null || echo unknown)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | xargs || true)"
    echo "cores: $(nproc 2>/dev/null || echo unknown)"
    echo "settings: ${EXTRA[*]:-default}"
} > "$OUT/environment.txt"

# 1. Default settings. --bytes applies to every file: alice29.txt (152,089 bytes) is measured
#    whole (and so gets the published rows), enwik6 as its first 200,000 bytes.
echo "== default settings: alice29.txt, enwik6[:200000]" >&2
"${BENCH[@]}" "$DATA/alice29.txt" "$DATA/enwik6" --bytes 200000 ${EXTRA[@]+"${EXTRA[@]}"} \
    --json --plot "$OUT/default.png" > "$OUT/default.json"

# 2. Streams sweep on alice29.txt: more streams run faster (bigger batches) but each stream
#    starts with an empty context, which costs ratio.
for s in $STREAMS; do
    echo "== alice29.txt --streams $s" >&2
    "${BENCH[@]}" "$DATA/alice29.txt" --streams "$s" ${EXTRA[@]+"${EXTRA[@]}"} \
        --json --plot "$OUT/alice29-streams$s.png" > "$OUT/alice29-streams$s.json"
done

# Summary of the sweep: the llmzip row of each run.
python3 - "$OUT" $STREAMS > "$OUT/streams_sweep.md" <<'EOF'
import json
import sys

out, streams = sys.argv[1], sys.argv[2:]
print("| streams | bits/byte | compress KB/s | decompress KB/s | tokens/s | peak RSS MB |")
print("| ---: | ---: | ---: | ---: | ---: | ---: |")
for s in streams:
    with open(f"{out}/alice29-streams{s}.json") as f:
        r = next(r for r in json.load(f) if r["compressor"] == "llmzip")
    print(f"| {s} | {r['bpb']:.4f} | {r['compress_kbps']:.2f} | {r['decompress_kbps']:.2f} "
          f"| {r['tokens_per_s']:.1f} | {r['peak_rss_mb']:.0f} |")
EOF
echo "== streams sweep on alice29.txt" >&2
cat "$OUT/streams_sweep.md"
echo "results in $OUT/" >&2
