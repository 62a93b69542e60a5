"""The command line: file naming, stdin/stdout, exit codes, one-line errors, no partial output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llmzip import container as fmt
from llmzip.mixer import MixConfig
from tests.helpers import CORPUS, OPTS, invoke, subprocess_env


@pytest.fixture
def text_file(tmp_path) -> Path:
    p = tmp_path / "a.txt"
    p.write_bytes(CORPUS.encode()[:700])
    return p


@pytest.mark.parametrize("seconds, speed, tps", [
    (433.7, "0.045 KB/s", "13 tokens/s"),  # a slow run must not read "0.0 KB/s"
    (900.0, "0.022 KB/s", "6.1 tokens/s"),
    (20.0, "0.977 KB/s", "273 tokens/s"),
    (0.5, "39.1 KB/s", "10920 tokens/s"),
])
def test_verbose_report_keeps_small_speeds_readable(capsys, seconds, speed, tps):
    from llmzip.cli import _report
    from llmzip.codec import Stats

    _report("a.txt", Stats(20000, 2904, 5460, 1, 0, [5]), seconds, True)
    err = capsys.readouterr().err
    assert f"({speed}, {tps}, streams [5])" in err, err


def test_compress_decompress_files(tiny_env, text_file, tmp_path):
    r = invoke(["compress", *OPTS, "-v", str(text_file)])
    assert r.exit_code == 0, r.output
    packed = Path(str(text_file) + ".llmz")
    assert packed.exists() and text_file.exists()
    assert "bits/byte" in r.stderr
    original = text_file.read_bytes()
    text_file.unlink()
    r = invoke(["-d", str(packed)])
    assert r.exit_code == 0, r.output
    assert text_file.read_bytes() == original


def test_existing_output_needs_force(tiny_env, text_file):
    out = Path(str(text_file) + ".llmz")
    out.write_bytes(b"precious")
    r = invoke(["compress", *OPTS, str(text_file)])
    assert r.exit_code == 1 and "already exists" in r.stderr
    assert out.read_bytes() == b"precious"
    r = invoke(["compress", *OPTS, "-f", str(text_file)])
    assert r.exit_code == 0 and out.read_bytes() != b"precious"


def test_stdout_and_output_flags(tiny_env, text_file, tmp_path):
    r = invoke(["compress", *OPTS, "-c", str(text_file)])
    assert r.exit_code == 0
    blob = r.stdout_bytes
    assert blob.startswith(b"LLMZ")
    r = invoke(["decompress", "-c"], input=blob)
    assert r.exit_code == 0 and r.stdout_bytes == text_file.read_bytes()
    out = tmp_path / "x.bin"
    r = invoke(["compress", *OPTS, str(text_file), "-o", str(out)])
    assert r.exit_code == 0 and out.read_bytes().startswith(b"LLMZ")
    r = invoke(["decompress", str(out), "-o", str(tmp_path / "back")])
    assert (tmp_path / "back").read_bytes() == text_file.read_bytes()


def test_rm_removes_source_only_after_success(tiny_env, text_file):
    original = text_file.read_bytes()
    r = invoke(["compress", *OPTS, "--rm", str(text_file)])
    assert r.exit_code == 0, r.output
    assert not text_file.exists()
    r = invoke(["decompress", "--rm", str(text_file) + ".llmz"])
    assert r.exit_code == 0
    assert text_file.read_bytes() == original and not Path(str(text_file) + ".llmz").exists()


def test_corrupt_input_one_line_exit_1_no_output(tiny_env, text_file, tmp_path):
    r = invoke(["compress", *OPTS, str(text_file)])
    packed = Path(str(text_file) + ".llmz")
    blob = bytearray(packed.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    bad = tmp_path / "bad.txt.llmz"
    bad.write_bytes(bytes(blob[:-3]))
    r = invoke(["decompress", str(bad)])
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("llmzip: ")
    assert not (tmp_path / "bad.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_wrong_suffix_and_missing_file(tiny_env, tmp_path):
    r = invoke(["decompress", str(tmp_path / "nope.txt")])
    assert r.exit_code == 1 and "unknown suffix" in r.stderr
    r = invoke(["compress", str(tmp_path / "missing.txt")])
    assert r.exit_code == 1 and "No such file" in r.stderr


def test_usage_errors_exit_2(tiny_env, text_file):
    r = invoke(["compress", "--streams", "0", str(text_file)])
    assert r.exit_code == 2
    r = invoke(["compress", "-o", "x", str(text_file), str(text_file)])
    assert r.exit_code == 2


def _settings(*argv):
    """The Settings that `compress` would build from these flags."""
    import click

    from llmzip.options import settings_from, settings_options

    seen = {}
    cmd = settings_options(click.Command("c", callback=lambda **o: seen.update(o)))
    cmd.main(list(argv), standalone_mode=False)
    return settings_from(**seen)


def test_best_sets_one_stream_and_the_full_window_unless_told_otherwise():
    from llmzip import codec

    plain = _settings()
    assert (plain.streams, plain.window) == (None, codec.DEFAULT_WINDOW)
    best = _settings("--best")
    assert (best.streams, best.window) == (1, codec.BEST_WINDOW)
    assert (_settings("--best", "--context", "64").window, _settings("--best", "--streams", "3")
            .streams) == (64, 3)
    assert _settings("--best", "--portable").window == codec.BEST_WINDOW  # exact up to 8192


def test_best_round_trip(tiny_env, text_file, tmp_path):
    r = invoke(["compress", "--best", "--threads", "1", "-c", str(text_file)])
    assert r.exit_code == 0, r.output
    packed = tmp_path / "best.llmz"
    packed.write_bytes(r.stdout_bytes)
    info = invoke(["info", str(packed)]).stdout
    assert "window 4096 tokens" in info and "in 1 streams" in info, info
    r = invoke(["decompress", "-c", str(packed)])
    assert r.exit_code == 0 and r.stdout_bytes == text_file.read_bytes()


def test_window_longer_than_the_model_takes_is_one_line_exit_1(tiny_env, text_file, tmp_path):
    out = tmp_path / "long.llmz"
    r = invoke(["compress", "--context", "8193", "-o", str(out), str(text_file)])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "at most 8192" in r.stderr and not out.exists()  # the tiny model: 16384 positions
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_info_and_test(tiny_env, text_file):
    invoke(["compress", *OPTS, str(text_file)])
    packed = str(text_file) + ".llmz"
    r = invoke(["info", packed])
    assert r.exit_code == 0 and "streams" in r.stdout
    assert f"format version {fmt.FORMAT_VERSION}" in r.stdout
    assert f"mixer: {MixConfig().describe()}" in r.stdout and "AdaGrad" in r.stdout
    invoke(["compress", *OPTS, "--no-ngram", "--no-match", "--no-bias", "--no-recall", "-f",
            str(text_file)])
    assert "mixer: LM alone" in invoke(["info", packed]).stdout
    r = invoke(["-t", packed])
    assert r.exit_code == 0 and "OK" in r.stderr


def test_missing_model_says_how_to_get_it(text_file, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMZIP_MODEL", str(tmp_path / "no-model"))
    r = invoke(["compress", str(text_file)])
    assert r.exit_code == 1 and "llmzip model fetch" in r.stderr


def test_version_and_help():
    assert invoke(["-V"]).exit_code == 0
    r = invoke(["-h"])
    assert r.exit_code == 0 and "decompress" in r.output


def test_real_pipe_stdin_stdout(tiny_model):
    data = CORPUS.encode() * 3
    cmd = [sys.executable, "-m", "llmzip"]
    packed = subprocess.run([*cmd, "compress", *OPTS], input=data, capture_output=True,
                            env=subprocess_env(tiny_model), check=True).stdout
    back = subprocess.run([*cmd, "-d"], input=packed, capture_output=True,
                          env=subprocess_env(tiny_model), check=True).stdout
    assert back == data


# Killing a compression midway: tests/test_reliability.py::test_killed_midway_leaves_nothing
