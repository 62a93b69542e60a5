#!/usr/bin/env bash
# The device check of issues 21 and 25, for the GPU machine (the `device` tool's `run`), under
# 8 minutes: CPU-made files decode on CUDA and the reverse, tokens/s on each side, and
# --workers 2 --device cuda gives the one-process bytes (benchmarks/device_check.py says how).
# That machine has torch, numba, tokenizers, safetensors and click but not constriction: carry
# its wheel in .whl (prepared here with `pip download --no-deps --only-binary=:all:
# --python-version 3.12 --platform manylinux_2_17_x86_64 -d .whl constriction==0.5.0`), e.g.
#   run(command="bash benchmarks/device_check.sh", carry=[".whl"], timeout_s=540)
set -uo pipefail
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site || exit 1
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
nvidia-smi -L 2>/dev/null
lscpu | grep -E "^Model name|^CPU\(s\)"
timeout 480 python3 benchmarks/device_check.py "$@" 2>&1 | tee "${OUT:-/tmp}/device_check.txt"
