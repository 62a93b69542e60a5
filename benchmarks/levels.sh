#!/usr/bin/env bash
# The level ladder (settings.LEVELS) measured on one file: for each level, compress and
# decompress with the installed `llmzip`, each run alone, then `cmp`. One line per level:
#   level bytes bits/byte compress_s compress_KB/s decompress_s decompress_KB/s peak_RSS_MB ok
#
#   benchmarks/levels.sh ../shared/data/alice29.txt            # levels 1..8
#   LEVELS="1 5 9" benchmarks/levels.sh FILE --threads 1       # chosen levels, extra flags
# Level 9 (--best) decompresses in ~10x the default's time; it is not in the default list.
set -euo pipefail

file=${1:?usage: levels.sh FILE [llmzip flags...]}
shift
read -r -a LLMZIP <<< "${LLMZIP_CMD:-llmzip}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
size=$(stat -c %s "$file")
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(basename "$file") ($size bytes) $*"
echo "# level bytes bpb compress_s KB/s decompress_s KB/s peak_RSS_MB roundtrip"
for level in ${LEVELS:-1 2 3 4 5 6 7 8}; do
    /usr/bin/time -f "%e %M" -o "$tmp/c.time" "${LLMZIP[@]}" compress -q -c "-$level" "$@" \
        "$file" > "$tmp/x.llmz"
    /usr/bin/time -f "%e %M" -o "$tmp/d.time" "${LLMZIP[@]}" decompress -q -c "$@" \
        "$tmp/x.llmz" > "$tmp/x.out"
    read -r cs crss < "$tmp/c.time"
    read -r ds drss < "$tmp/d.time"
    packed=$(stat -c %s "$tmp/x.llmz")
    ok=$(cmp -s "$tmp/x.out" "$file" && echo ok || echo FAILED)
    awk -v l="$level" -v p="$packed" -v n="$size" -v cs="$cs" -v ds="$ds" -v r1="$crss" \
        -v r2="$drss" -v ok="$ok" 'BEGIN { m = r1 > r2 ? r1 : r2;
        printf "-%s %d %.4f %.1f %.3f %.1f %.3f %.0f %s\n", l, p, 8 * p / n, cs,
               n / 1024 / cs, ds, n / 1024 / ds, m / 1024, ok }'
done
