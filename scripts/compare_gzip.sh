#!/usr/bin/env bash
# llmzip and gzip side by side on the flags they share (issue 23): -c -d -t -k -f -q -v,
# combined short flags, several files with one bad, modes and mtimes, a .gz/.llmz input, and
# writing into a device. One PASS/FAIL line per check (a check passes when both tools behave
# as expected); exit status 1 if any check failed.
#
#   scripts/compare_gzip.sh                  # the tiny seeded test model (tests/helpers.py)
#   scripts/compare_gzip.sh --default-model  # the installed default model (llmzip model fetch)
#
# $LLMZIP_MODEL, if set, is used as is. $LLMZIP (default .venv/bin/llmzip) and $PYTHON
# (default .venv/bin/python) name the programs. Differences that are by design are not checked:
# llmzip keeps its input by default (gzip needs -k); gzip warns with exit status 2 (an existing
# output) or 0 (a .gz input left unchanged) where llmzip exits 1.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LLMZIP=${LLMZIP:-$ROOT/.venv/bin/llmzip}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
command -v gzip >/dev/null || { echo "compare_gzip: gzip not found" >&2; exit 2; }
[ -x "$LLMZIP" ] || { echo "compare_gzip: $LLMZIP not found (set \$LLMZIP)" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/compare_gzip.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

if [ -z "${LLMZIP_MODEL:-}" ] && [ "${1:-}" != "--default-model" ]; then
    "$PYTHON" -c "import sys; sys.path.insert(0, '$ROOT'); from pathlib import Path
from tests.helpers import build_model_dir; build_model_dir(Path(sys.argv[1]))" "$WORK/tiny" \
        || { echo "compare_gzip: cannot build the tiny model" >&2; exit 2; }
    export LLMZIP_MODEL=$WORK/tiny
fi

head -c 1200 README.md > "$WORK/sample.txt"
MTIME=200102030405.06
passed=0
failed=0

# tool NAME ARGS...: run gzip, or llmzip (one thread: the machine may be busy), stdin empty.
tool() {
    local name=$1
    shift
    if [ "$name" = gzip ]; then gzip "$@" </dev/null; else "$LLMZIP" "$@" </dev/null; fi
}
ext() { if [ "$1" = gzip ]; then echo gz; else echo llmz; fi; }
# Compression settings for llmzip only: gzip has none.
z() { if [ "$1" = llmzip ]; then echo "--threads 1"; fi; }

# fresh TOOL: a new directory with t.txt (mode 640, a fixed mtime) and t.txt.EXT; cd into it.
fresh() {
    local d
    d=$(mktemp -d "$WORK/$1.XXXX")
    cd "$d" || exit 2
    cp "$WORK/sample.txt" t.txt
    chmod 640 t.txt
    touch -t "$MTIME" t.txt
    if [ "$1" = gzip ]; then gzip -c t.txt > t.txt.gz; else "$LLMZIP" -c $(z llmzip) t.txt > t.txt.llmz; fi
    touch -t "$MTIME" "t.txt.$(ext "$1")"
}

# check NAME FUNCTION: FUNCTION TOOL must succeed for gzip and for llmzip.
check() {
    local name=$1 fn=$2 t why=""
    for t in gzip llmzip; do
        ( fresh "$t" && "$fn" "$t" ) > "$WORK/out" 2> "$WORK/err" || why="$why $t"
    done
    cd "$WORK" || exit 2
    if [ -z "$why" ]; then
        echo "PASS  $name"
        passed=$((passed + 1))
    else
        echo "FAIL  $name (not as expected:$why)"
        failed=$((failed + 1))
    fi
}

same_as_sample() { cmp -s "$1" "$WORK/sample.txt"; }
meta() { stat -c '%a %Y' "$1"; }

c_to_stdout() {  # -c: data on stdout, input kept, no file written
    rm "t.txt.$(ext "$1")"
    tool "$1" -c $(z "$1") t.txt > out.bin && [ -s out.bin ] && [ -e t.txt ] \
        && [ ! -e "t.txt.$(ext "$1")" ]
}
d_c_pipe() {  # -c | -d -c from stdin to stdout
    if [ "$1" = gzip ]; then gzip -c t.txt | gzip -d -c > back
    else "$LLMZIP" -c $(z llmzip) t.txt | "$LLMZIP" -d -c > back; fi
    same_as_sample back
}
dc() { tool "$1" -dc "t.txt.$(ext "$1")" > back && same_as_sample back; }
cd_() { tool "$1" -cd "t.txt.$(ext "$1")" > back && same_as_sample back; }
k() {  # -k: writes t.txt.EXT, keeps t.txt
    rm "t.txt.$(ext "$1")"
    tool "$1" -k $(z "$1") t.txt && [ -e t.txt ] && [ -s "t.txt.$(ext "$1")" ]
}
dk() {  # -d -k: writes t.txt, keeps t.txt.EXT
    rm t.txt
    tool "$1" -d -k "t.txt.$(ext "$1")" && same_as_sample t.txt && [ -e "t.txt.$(ext "$1")" ]
}
no_overwrite() {  # an existing output is not replaced without -f
    echo old > "t.txt.$(ext "$1")"
    ! tool "$1" -k $(z "$1") t.txt && [ "$(cat "t.txt.$(ext "$1")")" = old ]
}
kf() {  # -kf replaces it
    echo old > "t.txt.$(ext "$1")"
    tool "$1" -kf $(z "$1") t.txt && [ "$(cat "t.txt.$(ext "$1")")" != old ] && [ -e t.txt ]
}
dkf() {  # -dkf replaces an existing t.txt, keeps t.txt.EXT
    echo old > t.txt
    tool "$1" -dkf "t.txt.$(ext "$1")" && same_as_sample t.txt && [ -e "t.txt.$(ext "$1")" ]
}
t_good() {  # -t: exit 0, nothing written
    local before
    before=$(ls -a)
    tool "$1" -t "t.txt.$(ext "$1")" && [ "$(ls -a)" = "$before" ]
}
tv() { tool "$1" -tv "t.txt.$(ext "$1")" 2> err && grep -q "t.txt.$(ext "$1").*OK" err; }
t_several_one_bad() {  # every file reported by name, the run goes on, exit status non-zero
    local e
    e=$(ext "$1")
    cp "t.txt.$e" "u.txt.$e"
    echo "not compressed data" > "bad.txt.$e"
    ! tool "$1" -tv "t.txt.$e" "bad.txt.$e" "u.txt.$e" 2> err \
        && grep -q "bad.txt.$e" err && sed -n "/bad.txt.$e/,\$p" err | grep -q "u.txt.$e.*OK"
}
d_several_one_bad() {
    local e
    e=$(ext "$1")
    mv "t.txt.$e" "a.txt.$e"
    cp "a.txt.$e" "b.txt.$e"
    echo "not compressed data" > "bad.txt.$e"
    ! tool "$1" -dk "a.txt.$e" "bad.txt.$e" "b.txt.$e" 2> err \
        && grep -q "bad.txt.$e" err && same_as_sample a.txt && same_as_sample b.txt \
        && [ ! -e bad.txt ]
}
q() {  # -q: nothing on stderr on success
    rm "t.txt.$(ext "$1")"
    tool "$1" -q -k $(z "$1") t.txt 2> err && [ ! -s err ]
}
v() {  # -v: a line naming the file
    rm "t.txt.$(ext "$1")"
    tool "$1" -v -k $(z "$1") t.txt 2> err && grep -q "t.txt" err
}
mode_mtime() {  # outputs keep the input's mode and mtime, compressed and decompressed
    local e
    e=$(ext "$1")
    rm "t.txt.$e"
    tool "$1" -k $(z "$1") t.txt && [ "$(meta "t.txt.$e")" = "$(meta t.txt)" ] || return 1
    local want
    want=$(meta t.txt)
    rm t.txt
    tool "$1" -d -k "t.txt.$e" && [ "$(meta t.txt)" = "$want" ]
}
suffix_refused() {  # a compressed input is not compressed again, and a message names it ...
    local e
    e=$(ext "$1")
    tool "$1" -k $(z "$1") "t.txt.$e" 2> err
    [ ! -e "t.txt.$e.$e" ] && grep -q "t.txt.$e.*already has .$e suffix" err
}
suffix_forced() {  # ... unless forced
    local e
    e=$(ext "$1")
    tool "$1" -kf $(z "$1") "t.txt.$e" && [ -s "t.txt.$e.$e" ]
}

# A device to write into: a character device like /dev/null where mknod is allowed, else a
# FIFO with a reader. It must still be that device afterwards (never replaced by a file).
make_device() {
    if mknod dev c 1 3 2>/dev/null; then DEVTEST=-c; else mkfifo dev; DEVTEST=-p; fi
}
reader() { if [ "$DEVTEST" = -p ]; then cat dev > /dev/null & fi; }
device_compress() {
    make_device
    reader
    if [ "$1" = gzip ]; then gzip -c t.txt > dev; else "$LLMZIP" -f -o dev $(z llmzip) t.txt; fi \
        || return 1
    wait
    [ "$DEVTEST" dev ] || return 1
    reader
    tool "$1" -c $(z "$1") t.txt > dev && wait && [ "$DEVTEST" dev ]
}
device_decompress() {
    make_device
    reader
    if [ "$1" = gzip ]; then gzip -dc t.txt.gz > dev; else "$LLMZIP" -d -o dev t.txt.llmz; fi \
        && wait && [ "$DEVTEST" dev ]
}

check "-c writes to stdout, keeps the input, writes no file" c_to_stdout
check "-c | -d -c round trip through pipes" d_c_pipe
check "-dc (combined) decompresses to stdout" dc
check "-cd (combined) decompresses to stdout" cd_
check "-k writes FILE.EXT and keeps FILE" k
check "-d -k writes FILE and keeps FILE.EXT" dk
check "an existing output is not replaced without -f" no_overwrite
check "-kf (combined) replaces an existing output" kf
check "-dkf (combined) replaces an existing output" dkf
check "-t writes nothing" t_good
check "-tv (combined) names the file and says OK" tv
check "-t with one bad file of three: names it, goes on, exits non-zero" t_several_one_bad
check "-d with one bad file of three: names it, decompresses the others" d_several_one_bad
check "-q prints nothing on success" q
check "-v names the file" v
check "outputs keep the input's mode and mtime (both ways)" mode_mtime
check "a compressed input is not compressed again" suffix_refused
check "-f compresses a compressed input again" suffix_forced
check "compressing into a device writes into it, never replaces it" device_compress
check "decompressing into a device writes into it, never replaces it" device_decompress

echo "$passed passed, $failed failed (model: ${LLMZIP_MODEL:-the installed default})"
[ "$failed" -eq 0 ]
