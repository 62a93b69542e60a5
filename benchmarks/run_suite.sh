#!/usr/bin/env bash
# The llmzip benchmark suite, run with the installed `llmzip`. Each benchmark writes one results
# file under benchmarks/results/ whose first lines say its command, host and date; the suite
# ends by assembling benchmarks/RESULTS.md from every results file there
# (benchmarks/assemble_results.py: one section per *.md or *.txt file, whoever wrote it).
#
#   benchmarks/run_suite.sh                        # every benchmark, then RESULTS.md
#   benchmarks/run_suite.sh --assemble-only        # only rebuild RESULTS.md from the results
#   ASSEMBLE_ONLY=1 benchmarks/run_suite.sh        #   files (runs nothing, takes a second)
#   ONLY="compressors bombs" benchmarks/run_suite.sh   # chosen benchmarks, then RESULTS.md
#   BASE=e0cb0eb benchmarks/run_suite.sh           # adds this checkout against a baseline commit
#   LLMZIP_DATA=/data ...                          # where alice29.txt and enwik6 are
#   LLMZIP_RESULTS=/tmp/r ...                      # another results folder (RESULTS.md too)
#   LEVELS="1 5 9" ...                             # the levels measured (default 1 .. 9)
# Settings for every llmzip run (e.g. --threads 2) can follow on the command line.
#
# Benchmarks (ONLY's names): compressors (alice29 and enwik6[:200000] at defaults against gzip,
# bzip2, xz, zstd and brotli), levels (the ladder on alice29, and the README's plot), baseline
# (vs_baseline.py against $BASE: alice29, its first 10,000 bytes, an emulated AVX2-only host;
# only with BASE), profile (where a step's time goes), parallel (enwik6 with and without
# --workers 2), bombs (forged files). Every llmzip run compresses, decompresses and compares;
# on a 2-core CPU the whole suite takes several hours (level 9 alone ~30 minutes).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

ASSEMBLE_ONLY=${ASSEMBLE_ONLY:-0}
if [[ ${1:-} == --assemble-only ]]; then
    ASSEMBLE_ONLY=1
    shift
fi
DATA=${LLMZIP_DATA:-../shared/data}
OUT=${LLMZIP_RESULTS:-benchmarks/results}
RESULTS=$( [[ $OUT == benchmarks/results ]] && echo benchmarks/RESULTS.md || echo "$OUT/RESULTS.md")
PYTHON=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}
read -r -a LLMZIP <<< "${LLMZIP_CMD:-llmzip}"
EXTRA=("$@")

die() { echo "run_suite.sh: $*" >&2; exit 1; }

assemble() {
    "$PYTHON" benchmarks/assemble_results.py --results "$OUT" --out "$RESULTS"
}

if [[ $ASSEMBLE_ONLY == 1 ]]; then
    assemble
    exit 0
fi

ONLY=${ONLY:-"compressors levels ${BASE:+baseline} profile parallel bombs"}
wants() { [[ " $ONLY " == *" $1 "* ]]; }

command -v "${LLMZIP[0]}" > /dev/null || die "${LLMZIP[0]} not found (install llmzip first)"
for f in alice29.txt enwik6; do
    [[ -f "$DATA/$f" ]] || die "$DATA/$f is missing (see ../shared/data/README.md)"
done
wants baseline && [[ -z ${BASE:-} ]] && die "baseline needs BASE=<commit>"
mkdir -p "$OUT"
ALICE=$DATA/alice29.txt
ENWIK=$DATA/enwik6
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The host line of every results file: CPU kind, cores, the flags that decide the kernels.
host() {
    local cpu flags torch
    cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
    flags=$(grep -m1 -o -w -E 'avx2|avx512f|avx512bw|avx512_vnni|avx512_bf16|amx_int8|amx_tile|avx_vnni' \
        /proc/cpuinfo 2>/dev/null | tr '\n' ' ' | sed 's/ $//' || true)
    torch=$("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo unknown)
    echo "${cpu:-unknown CPU}, $(nproc) cores (lscpu flags: ${flags:-none of avx2/avx512/amx}), torch $torch"
}
HOST=$(host)

# header FILE TITLE NOTE COMMAND...: the front matter of a results file (assemble_results.py).
header() {
    local file=$1 title=$2 note=$3
    shift 3
    {
        echo "# title: $title"
        for c in "$@"; do echo "# command: $c"; done
        echo "# host: $HOST"
        echo "# date: $(date -u +%Y-%m-%d)"
        [[ -n $note ]] && echo "# note: $note"
        echo "# note: $("${LLMZIP[@]}" --version 2>/dev/null || echo 'llmzip, version unknown')${EXTRA[*]:+; settings: ${EXTRA[*]}}."
    } > "$file"
}

# 1. Default settings against the other compressors. --bytes applies to every file: alice29.txt
#    (152,089 bytes) is measured whole (and so gets the published rows), enwik6 as its first
#    200,000 bytes.
if wants compressors; then
    echo "== compressors: alice29.txt, enwik6[:200000]" >&2
    cmd=(llmzip bench "$ALICE" "$ENWIK" --bytes 200000 ${EXTRA[@]+"${EXTRA[@]}"} --json)
    "${LLMZIP[@]}" "${cmd[@]:1}" > "$OUT/compressors.json"
    header "$tmp/h" "Against other compressors (default settings)" \
        "Bits per byte, lower is better; every round trip checked by bench." "${cmd[*]}"
    { cat "$tmp/h"; echo; "$PYTHON" benchmarks/assemble_results.py --table "$OUT/compressors.json"; } \
        > "$OUT/compressors.md"
fi

# 2. The level ladder on alice29.txt, then the README's plot (the ladder against the others).
if wants levels; then
    echo "== levels: alice29.txt" >&2
    LEVELS=${LEVELS:-1 2 3 4 5 6 7 8 9} LLMZIP_CMD="${LLMZIP[*]}" \
        benchmarks/levels.sh "$ALICE" ${EXTRA[@]+"${EXTRA[@]}"} > "$tmp/levels"
    header "$OUT/alice29-levels.txt" "Levels on alice29.txt" \
        "Each level compressed, decompressed and compared, each run alone. The plot shows the ladder against the classic compressors." \
        "LEVELS=\"${LEVELS:-1 2 3 4 5 6 7 8 9}\" benchmarks/levels.sh $ALICE ${EXTRA[*]}" \
        "python benchmarks/plot_levels.py $ALICE $OUT/alice29-levels.txt $OUT/default.png --json $OUT/default.json"
    { echo "# image: default.png"; cat "$tmp/levels"; } >> "$OUT/alice29-levels.txt"
    "$PYTHON" benchmarks/plot_levels.py "$ALICE" "$OUT/alice29-levels.txt" "$OUT/default.png" \
        --json "$OUT/default.json"
fi

# 3. This checkout against a baseline commit, in one run (vs_baseline.py).
baseline() {  # NAME TITLE NOTE ARGS...
    local name=$1 title=$2 note=$3
    shift 3
    echo "== baseline $BASE: $title" >&2
    "$PYTHON" benchmarks/vs_baseline.py "$ALICE" --base "$BASE" "$@" > "$tmp/base"
    header "$OUT/$name" "$title" "$note" "python benchmarks/vs_baseline.py $ALICE --base $BASE $*"
    cat "$tmp/base" >> "$OUT/$name"
}
if wants baseline; then
    baseline kernels-host-alice.txt "This checkout against the baseline commit: alice29 at defaults" \
        "Times include starting Python and loading the model."
    baseline kernels-host-alice10k.txt "This checkout against the baseline commit: alice29[:10000]" \
        "One stream (a small input)." --bytes 10000
    baseline kernels-avx2ref-alice3k.txt "This checkout against the baseline commit: an AVX2-only host, emulated" \
        "vs_baseline.py --isa avx2-ref: AVX2 kernels only, oneDNN off (torch._int_mm is its reference loop)." \
        --bytes 3000 --isa avx2-ref
fi

# 4. Where a step's time goes.
if wants profile; then
    echo "== profile: alice29[:10000]" >&2
    "$PYTHON" benchmarks/profile_step.py "$ALICE" --bytes 10000 --threads 2 > "$tmp/profile"
    header "$OUT/profile-host-alice10k.txt" "Where the time goes" "" \
        "python benchmarks/profile_step.py $ALICE --bytes 10000 --threads 2"
    cat "$tmp/profile" >> "$OUT/profile-host-alice10k.txt"
fi

# 5. Frames in parallel: the whole of enwik6 in 8 frames, one process, then two workers.
if wants parallel; then
    echo "== parallel: enwik6, --workers 1 and 2" >&2
    {
        echo "| run | wall | size | peak RSS (largest process) | round trip |"
        echo "| --- | ---: | ---: | ---: | --- |"
        for w in 1 2; do
            /usr/bin/time -f "%e %M" -o "$tmp/t" "${LLMZIP[@]}" compress -q -c --frame-size 131072 \
                --workers "$w" ${EXTRA[@]+"${EXTRA[@]}"} "$ENWIK" > "$tmp/p.llmz"
            read -r secs rss < "$tmp/t"
            ok=$("${LLMZIP[@]}" decompress -q -c "$tmp/p.llmz" | cmp -s - "$ENWIK" && echo ok || echo FAILED)
            size=$(stat -c %s "$tmp/p.llmz")
            awk -v w="$w" -v s="$secs" -v r="$rss" -v p="$size" -v n="$(stat -c %s "$ENWIK")" \
                -v ok="$ok" 'BEGIN { printf "| `--workers %d` | %.1f s (%.2f KB/s) | %d B (%.3f bpb) | %.2f GB | %s |\n",
                w, s, n / 1024 / s, p, 8 * p / n, r / 1048576, ok }'
        done
    } > "$tmp/parallel"
    header "$OUT/parallel.md" "Frames in parallel (--workers)" \
        "The whole of enwik6 in frames of 128 KiB; round trips checked with cmp." \
        "/usr/bin/time -f \"%e %M\" llmzip compress -q -c --frame-size 131072 --workers N $ENWIK ${EXTRA[*]}"
    { echo; cat "$tmp/parallel"; } >> "$OUT/parallel.md"
fi

# 6. Forged files: each must fail with one line, exit 1, in seconds.
if wants bombs; then
    echo "== bombs" >&2
    "$PYTHON" benchmarks/bombs.py > "$tmp/bombs" || echo "run_suite.sh: a forgery did not fail as it must" >&2
    header "$OUT/bombs.txt" "Bad input: forged files" \
        "Each forgery (tests/forgeries.py) must fail with one line and exit 1 within seconds." \
        "python benchmarks/bombs.py"
    cat "$tmp/bombs" >> "$OUT/bombs.txt"
fi

assemble
echo "results in $OUT/, $RESULTS" >&2
