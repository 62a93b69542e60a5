"""Bounded coverage-guided fuzz runs (atheris) of the parser and the full decoder.

The acceptance runs are longer (tests/fuzz/fuzz_llmz.py; figures in benchmarks/RELIABILITY.md):
    nice -n 15 .venv/bin/python tests/fuzz/fuzz_llmz.py parser  -atheris_runs=100000
    nice -n 15 .venv/bin/python tests/fuzz/fuzz_llmz.py decoder -atheris_runs=2000

These runs must pass on a loaded machine and leave the checkout as they found it: the
per-input timeout is far beyond any slow machine (the harness bounds the work per input; a
20 s timeout once failed the decoder run on a loaded machine), and every file the fuzzer
writes (crash-*, timeout-*, slow-unit-*, its temporaries) goes under tmp_path.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytest.importorskip("atheris")
HARNESS = ROOT / "tests" / "fuzz" / "fuzz_llmz.py"
TIMEOUT = 1800  # seconds per input: a hang guard only (atheris takes -timeout=0 as 0 s)


def fuzz_command(tmp_path: Path, target: str, runs: int) -> list[str]:
    """The harness's command line: artifacts into tmp_path, no per-input timeout."""
    return [sys.executable, str(HARNESS), target, f"-atheris_runs={runs}", "-max_len=4096",
            f"-timeout={TIMEOUT}", "-rss_limit_mb=4096", f"-artifact_prefix={tmp_path}{os.sep}",
            str(tmp_path / "corpus")]


def test_fuzz_command_writes_nothing_outside_tmp_path(tmp_path):
    cmd = fuzz_command(tmp_path, "parser", 10)
    assert f"-artifact_prefix={tmp_path}{os.sep}" in cmd
    timeout = next(int(a.split("=")[1]) for a in cmd if a.startswith("-timeout="))
    assert timeout >= 600  # a slow machine must not turn into a "timeout" crash


@pytest.mark.parametrize(("target", "runs"), [("parser", 20000), ("decoder", 300)])
def test_fuzz_finds_no_crash(tmp_path, target, runs):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    seeds = [*(ROOT / "tests" / "fuzz" / "corpus").iterdir(),
             *(ROOT / "tests" / "golden").glob("v*/*.llmz")]
    for seed in seeds:
        shutil.copy(seed, corpus / f"{seed.parent.name}-{seed.name}")
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(fuzz_command(tmp_path, target, runs), capture_output=True,
                            text=True, cwd=work, env={**os.environ, "TMPDIR": str(work)},
                            timeout=3 * 3600)  # a hang guard only, far beyond any slow run
    # libFuzzer's -timeout timer is a periodic SIGALRM: once seen killing the process after
    # every run was done, while the interpreter shut down. A real hang or crash is reported
    # before "Done", with its own exit code.
    finished = f"Done {runs} in" in result.stderr
    ok = result.returncode == 0 or (result.returncode == -signal.SIGALRM and finished)
    assert ok and finished, result.stderr[-3000:]
