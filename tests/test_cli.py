"""The command line: file naming, stdin/stdout, exit codes, one-line errors, no partial output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import llmzip
from llmzip.format import container as fmt
from llmzip.format.mixconfig import MixConfig
from tests.helpers import CORPUS, OPTS, build_model_dir, invoke, one_line_error, subprocess_env


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
    from llmzip.cli.main import _report
    from llmzip.codec.stream import Stats

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

    from llmzip.cli.options import settings_from, settings_options

    seen = {}
    cmd = settings_options(click.Command("c", callback=lambda **o: seen.update(o)))
    cmd.main(list(argv), standalone_mode=False)
    return settings_from(**seen)


def test_levels_choose_only_what_is_left_unset():
    from llmzip.codec import settings

    plain = _settings()
    assert (plain.level, plain.streams, plain.window) == (settings.DEFAULT_LEVEL, None, None)
    for flags, level in ((("--best",), 9), (("-9",), 9), (("--fast",), 1), (("-1",), 1),
                         (("-3",), 3), (("-2", "-7"), 7), (("-9", "--portable"), 9)):
        s = _settings(*flags)
        assert (s.level, s.streams, s.window) == (level, None, None), flags
    best = _settings("--best").sized(10**6, 1)
    assert (best.streams, best.window, best.prime) == (1, settings.BEST_WINDOW, 0)
    told = _settings("--best", "--context", "64", "--streams", "3").sized(10**6, 1)
    assert (told.window, told.streams) == (64, 3)  # what the user said wins
    fast = _settings("-1").sized(10**6, 1)
    one = settings.LEVELS[1]
    assert (fast.window, fast.streams, fast.segment) == (one.window, None, one.segment)


def test_level_flags_combine_like_gzip():
    from llmzip.cli.main import _resolve

    assert _resolve(["-9c", "f"]) == ["compress", "-9c", "f"]
    assert _resolve(["-d1", "f"]) == ["decompress", "-1", "f"]


def test_best_round_trip(tiny_env, text_file, tmp_path):
    r = invoke(["compress", "--best", "--threads", "1", "-c", str(text_file)])
    assert r.exit_code == 0, r.output
    packed = tmp_path / "best.llmz"
    packed.write_bytes(r.stdout_bytes)
    info = invoke(["info", str(packed)]).stdout
    assert "window 4096 tokens" in info and "in 1 stream," in info, info
    assert "one frame, short form" in info and "warm start" in info, info
    r = invoke(["decompress", "-c", str(packed)])
    assert r.exit_code == 0 and r.stdout_bytes == text_file.read_bytes()


def test_fast_level_round_trip(tiny_env, text_file, tmp_path):
    """-1 on an input of one small frame: its own window and streams (levels below the
    default do not take the best level's coding), and the file decodes."""
    from llmzip.codec import settings

    r = invoke(["compress", "-1", "--threads", "1", "-c", str(text_file)])
    assert r.exit_code == 0, r.output
    packed = tmp_path / "fast.llmz"
    packed.write_bytes(r.stdout_bytes)
    info = invoke(["info", str(packed)]).stdout
    assert f"window {settings.LEVELS[1].window} tokens" in info, info
    r = invoke(["decompress", "-c", str(packed)])
    assert r.exit_code == 0 and r.stdout_bytes == text_file.read_bytes()


def test_window_longer_than_the_model_takes_is_one_line_exit_1(text_file, tmp_path, monkeypatch):
    short = build_model_dir(tmp_path / "short")
    config = json.loads((short / "config.json").read_text())
    config["max_position_embeddings"] = 1024  # windows up to 512
    (short / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("LLMZIP_MODEL", str(short))
    out = tmp_path / "long.llmz"
    r = invoke(["compress", "--context", "513", "-o", str(out), str(text_file)])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "at most 512" in r.stderr and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_info_and_test(tiny_env, text_file):
    invoke(["compress", *OPTS, str(text_file)])
    packed = str(text_file) + ".llmz"
    r = invoke(["info", packed])
    assert r.exit_code == 0 and "streams" in r.stdout
    assert f"format version {fmt.FORMAT_VERSION}" in r.stdout
    assert f"mixer: {MixConfig().describe()}" in r.stdout and "AdaGrad" in r.stdout
    assert MixConfig.lm_only().describe() == "LM alone"
    r = invoke(["-t", packed])
    assert r.exit_code == 0 and "OK" in r.stderr


def test_missing_model_says_how_to_get_it(text_file, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMZIP_MODEL", str(tmp_path / "no-model"))
    r = invoke(["compress", str(text_file)])
    assert r.exit_code == 1 and "llmzip model fetch" in r.stderr


def test_version_and_help():
    import importlib.metadata

    import llmzip

    r = invoke(["-V"])
    assert r.exit_code == 0 and llmzip.__version__ in r.output
    assert importlib.metadata.version("llmzip") == llmzip.__version__  # pip's = the CLI's
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


# --- gzip habits (issue 23) ----------------------------------------------------------------

@pytest.fixture
def packed(tiny_env, text_file) -> Path:
    r = invoke(["compress", *OPTS, str(text_file)])
    assert r.exit_code == 0, r.output
    return Path(f"{text_file}.llmz")


@pytest.mark.parametrize("flags", [["-dc"], ["-cd"], ["-d", "-c"], ["--decompress", "-c"],
                                   ["-dcq"], ["-cdf"]])
def test_combined_short_flags_decompress_to_stdout(packed, text_file, flags):
    r = invoke([*flags, str(packed)])
    assert r.exit_code == 0, r.output
    assert r.stdout_bytes == text_file.read_bytes()


def test_combined_short_flags_test_verbose(packed):
    r = invoke(["-tv", str(packed)])
    assert r.exit_code == 0, r.output
    assert f"{packed}: OK" in r.stderr and "bits/byte" in r.stderr


def test_combined_short_flags_keep_and_force(packed, text_file):
    packed.write_bytes(b"old")
    r = invoke(["-kf", *OPTS, str(text_file)])
    assert r.exit_code == 0, r.output
    assert packed.read_bytes().startswith(b"LLMZ") and text_file.exists()
    original = text_file.read_bytes()
    text_file.write_bytes(b"old")
    r = invoke(["-dkf", str(packed)])
    assert r.exit_code == 0, r.output
    assert text_file.read_bytes() == original and packed.exists()


def test_combined_short_flags_with_output(packed, text_file, tmp_path):
    out = tmp_path / "out.txt"
    r = invoke(["-do", str(out), str(packed)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == text_file.read_bytes()
    r = invoke(["-kfo", str(out), *OPTS, str(text_file)])  # the value of -o is "out.txt"
    assert r.exit_code == 0, r.output
    assert out.read_bytes().startswith(b"LLMZ")


def test_conflicting_modes_are_a_usage_error(packed):
    r = invoke(["-dz", str(packed)])
    assert r.exit_code == 2 and r.stdout_bytes == b""


def test_verbose_rm_says_verifying_and_reports_its_time(tiny_env, text_file):
    r = invoke(["compress", *OPTS, "-v", "--rm", str(text_file)])
    assert r.exit_code == 0, r.output
    assert f"{text_file}.llmz: verifying ..." in r.stderr
    assert f"{text_file}.llmz: verified in " in r.stderr
    assert not text_file.exists()


def test_verbose_reports_peak_memory(tiny_env, text_file):
    r = invoke(["compress", *OPTS, "-v", str(text_file)])
    assert r.exit_code == 0, r.output
    assert "peak RSS" in r.stderr and " MB" in r.stderr


def test_verbose_empty_input_says_so(tiny_env, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    r = invoke(["compress", *OPTS, "-v", str(empty)])
    assert r.exit_code == 0, r.output
    assert "empty input" in r.stderr and "bits/byte" not in r.stderr


def test_main_restores_the_signal_handlers(tiny_env, text_file, tmp_path):
    """In-process runs (these tests) must leave Ctrl-C to pytest afterwards."""
    import signal

    def mine(signum, frame) -> None:  # a handler of the caller's, whatever ran before
        raise AssertionError("not called")

    sigs = [getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {s: signal.signal(s, mine) for s in sigs}
    try:
        assert invoke(["compress", *OPTS, "-c", str(text_file)]).exit_code == 0
        assert invoke(["-t", str(tmp_path / "missing.llmz")]).exit_code == 1
        assert invoke(["-h"]).exit_code == 0
        assert [signal.getsignal(s) for s in sigs] == [mine] * len(sigs)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# --- start-up: no heavy imports for --help, -V, info; Ctrl-C at any point -----------------

HEAVY = ("torch", "transformers", "matplotlib", "rich")

_IMPORTS = """
import sys
from llmzip.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
sys.stderr.write("HEAVY " + " ".join(m for m in {heavy!r} if m in sys.modules) + "\\n")
"""


def _heavy_imports(*argv: str) -> tuple[str, list[str]]:
    r = subprocess.run([sys.executable, "-c", _IMPORTS.format(heavy=HEAVY), *argv],
                       capture_output=True, text=True, env=subprocess_env())
    line = [x for x in r.stderr.splitlines() if x.startswith("HEAVY")][-1]
    return r.stdout, line.split()[1:]


@pytest.mark.parametrize("flag", ["--help", "-h", "-V"])
def test_help_and_version_import_no_model_code(flag):
    out, heavy = _heavy_imports(flag)
    assert out and heavy == [], heavy


def test_info_imports_no_model_code(tiny_model, tmp_path):
    path = tmp_path / "a.llmz"
    path.write_bytes(llmzip.compress(b"hello " * 50, model=tiny_model, window=16, threads=1))
    out, heavy = _heavy_imports("info", str(path))
    assert "format version" in out and heavy == [], heavy


_INTERRUPT = """
import importlib.abc, os, signal, sys

class InterruptOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == sys.argv[1]:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while this module is imported
        return None

sys.meta_path.insert(0, InterruptOnImport())
from llmzip.cli.main import main
main(sys.argv[2:])
"""


@pytest.mark.parametrize("module", ["torch", "llmzip.codec.stream"])
def test_ctrl_c_during_start_up_is_one_line_exit_130(tiny_model, text_file, module):
    r = subprocess.run([sys.executable, "-c", _INTERRUPT, module, "compress", *OPTS, "-c",
                        str(text_file)], capture_output=True, env=subprocess_env(tiny_model))
    assert r.returncode == 130, r.stderr.decode()[-2000:]
    assert r.stderr.decode() == "llmzip: interrupted\n" and r.stdout == b""


def test_options_that_take_a_value_are_known_to_main():
    """main() reads mode letters out of the arguments; it must skip every option's value."""
    import click

    from llmzip.cli import main

    taking = set()
    for name in main.COMMANDS:
        command = main.cli.get_command(click.Context(main.cli), name)
        for sub in getattr(command, "commands", {}).values() or [command]:
            for p in sub.params:
                if isinstance(p, click.Option) and not p.is_flag:
                    taking.update(p.opts)
    assert {o for o in taking if o.startswith("--")} == main._LONG_WITH_VALUE
    assert {o[1] for o in taking if not o.startswith("--")} == set(main._SHORT_WITH_VALUE)


def test_cli_only_parses_and_calls():
    """File policy (temporaries, renames, removals, terminals, sinks) is cli/files.py's alone."""
    import ast

    from tests.helpers import ROOT

    tree = ast.parse((ROOT / "llmzip" / "cli" / "main.py").read_text())
    names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not names & {"unlink", "rename", "mkstemp", "tempfile", "chmod", "utime",
                        "atomic_output", "refuse_terminal", "NullWriter"}


def test_compare_gzip_script_is_valid_bash():
    """scripts/compare_gzip.sh (llmzip and gzip side by side, ~2 minutes) is run by hand."""
    import shutil

    from tests.helpers import ROOT

    script = ROOT / "scripts" / "compare_gzip.sh"
    assert os.access(script, os.X_OK)
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(script)], check=True)


def test_model_list_and_rm_show_and_free_the_cache(tmp_path, monkeypatch):
    """`model list` names every known model with its state and disk use; `model rm` deletes a
    model with its converted form (issue 23.12), and an unknown one is one line, exit 1."""
    from llmzip import model as models
    from llmzip.model import convert

    monkeypatch.setenv("LLMZIP_CACHE", str(tmp_path))
    info = models.MODELS["qwen2.5-coder-0.5b"]
    (tmp_path / "models").mkdir()
    gguf = tmp_path / "models" / info.file
    gguf.write_bytes(b"GGUF" + bytes(2_000_000))
    key = convert.sha256_file(gguf)[:32]
    converted = tmp_path / "converted" / f"{key}-e1"
    converted.mkdir(parents=True)
    (converted / "weights.safetensors").write_bytes(bytes(1_000_000))
    listed = invoke(["model", "list"])
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    row = next(line for line in lines if "qwen2.5-coder-0.5b" in line)
    assert "installed, 3 MB on disk (model file 2 MB, converted form 1 MB)" in row
    assert any("smollm2-135m" in line and "not installed" in line for line in lines)
    removed = invoke(["model", "rm", "qwen2.5-coder-0.5b"])
    assert removed.exit_code == 0 and "3 MB freed" in removed.stderr
    assert not gguf.exists() and not converted.exists()
    again = invoke(["model", "rm", "qwen2.5-coder-0.5b"])
    assert again.exit_code == 1
    one_line_error(again.stderr)


def test_loading_a_model_removes_the_forms_older_versions_converted(tmp_path, monkeypatch):
    """`model list` counts what the cache holds; what an older llmzip converted (another
    converted format) is removed once the current form is there (issue 42: a 538 MB float32
    copy that 0.1 kept)."""
    from llmzip.model import convert

    monkeypatch.setenv("LLMZIP_CACHE", str(tmp_path))
    gguf = tmp_path / "models" / "x.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + bytes(1000))
    key = convert.sha256_file(gguf)[:32]
    current = tmp_path / "converted" / f"{key}-{convert.CONVERTED_FORMAT}"
    old = tmp_path / "converted" / f"{key}-e0"
    other = tmp_path / "converted" / f"{'0' * 32}-e0"  # another model's: kept
    for d in (current, old, other):
        d.mkdir(parents=True)
        (d / "fingerprint").write_text("00")
    assert convert.converted_dir(gguf) == current
    assert current.exists() and other.exists() and not old.exists()

