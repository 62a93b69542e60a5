"""File policy (llmzip/files.py, issue 23): devices and FIFOs are written into, outputs keep the
input's mode and mtime, .llmz inputs are not compressed again, several inputs are reported one
by one, --rm keeps the input unless its output is a verified regular file."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

import llmzip
from tests.helpers import CORPUS, OPTS, invoke

MTIME_NS = 1_000_000_123_456_789  # 2001-09-09, with nanoseconds


@pytest.fixture
def text_file(tmp_path) -> Path:
    p = tmp_path / "a.txt"
    p.write_bytes(CORPUS.encode()[:700])
    return p


@pytest.fixture
def packed(tiny_env, text_file, tmp_path) -> Path:
    p = tmp_path / "p.txt.llmz"
    p.write_bytes(llmzip.compress(text_file.read_bytes(), model=tiny_env, window=16, threads=1))
    return p


def _fake_null(tmp_path: Path) -> Path:
    """A character device like /dev/null (1, 3) in tmp_path; skipped where mknod is refused."""
    path = tmp_path / "fakenull"
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, AttributeError):
        pytest.skip("mknod of a character device needs privileges")
    return path


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_device_output_is_written_into_never_replaced(tiny_env, text_file, packed, tmp_path,
                                                      command):
    dev = _fake_null(tmp_path)
    src = text_file if command == "compress" else packed
    argv = [command, *(OPTS if command == "compress" else []), "-o", str(dev), str(src)]
    for extra in ([], ["-f"]):  # no -f needed, and -f does not replace it either
        r = invoke([*argv[:1], *extra, *argv[1:]])
        assert r.exit_code == 0, r.output
        assert stat.S_ISCHR(dev.lstat().st_mode), "the device was replaced"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_fifo_output_is_written_into(tiny_env, text_file, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    r = invoke(["compress", *OPTS, "-f", "-o", str(fifo), str(text_file)])
    assert r.exit_code == 0, r.output
    assert stat.S_ISFIFO(fifo.lstat().st_mode), "the FIFO was replaced"
    reader.join(timeout=600)  # at once: the writer has closed it
    assert got and llmzip.decompress(got[0]) == text_file.read_bytes()


def test_outputs_keep_the_input_mode_and_mtime(tiny_env, text_file, tmp_path):
    text_file.chmod(0o640)
    os.utime(text_file, ns=(MTIME_NS, MTIME_NS))
    mtime = text_file.stat().st_mtime_ns  # as the file system stores it
    r = invoke(["compress", *OPTS, str(text_file)])
    assert r.exit_code == 0, r.output
    packed = Path(f"{text_file}.llmz")
    assert stat.S_IMODE(packed.stat().st_mode) == 0o640
    assert packed.stat().st_mtime_ns == mtime
    original = text_file.read_bytes()
    text_file.unlink()
    r = invoke(["-d", str(packed)])
    assert r.exit_code == 0, r.output
    assert text_file.read_bytes() == original
    assert stat.S_IMODE(text_file.stat().st_mode) == 0o640
    assert text_file.stat().st_mtime_ns == mtime


def test_output_from_stdin_gets_the_umask_mode(tiny_env, tmp_path):
    out = tmp_path / "s.llmz"
    old = os.umask(0o027)
    try:
        r = invoke(["compress", *OPTS, "-o", str(out)], input=CORPUS.encode()[:300])
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


def test_llmz_input_is_not_compressed_again_unless_forced(tiny_env, text_file, packed,
                                                         tmp_path):
    r = invoke(["compress", *OPTS, str(packed), str(text_file)])
    assert r.exit_code == 1
    assert f"llmzip: {packed}: already has .llmz suffix -- unchanged\n" in r.stderr
    assert not Path(f"{packed}.llmz").exists()
    assert Path(f"{text_file}.llmz").exists()  # the run went on
    r = invoke(["compress", *OPTS, "-f", str(packed)])  # gzip -f compresses it again
    assert r.exit_code == 0, r.output
    assert llmzip.decompress(Path(f"{packed}.llmz").read_bytes()) == packed.read_bytes()


def _bad(tmp_path: Path) -> Path:
    bad = tmp_path / "bad.txt.llmz"
    bad.write_bytes(b"this is not an llmzip file")
    return bad


def test_test_reports_every_file_and_goes_on(tiny_env, packed, tmp_path):
    bad = _bad(tmp_path)
    r = invoke(["-t", str(bad), str(packed)])
    assert r.exit_code == 1
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"llmzip: {bad}: ") and "magic" in lines[0], r.stderr
    assert lines[1] == f"{packed}: OK"


def test_info_reports_every_file_and_goes_on(tiny_env, packed, tmp_path):
    bad = _bad(tmp_path)
    r = invoke(["info", str(bad), str(packed)])
    assert r.exit_code == 1
    assert r.stderr.startswith(f"llmzip: {bad}: ") and r.stderr.count("\n") == 1, r.stderr
    assert r.stdout.startswith(f"{packed}: llmzip format version")


def test_decompress_several_files_one_bad(tiny_env, packed, text_file, tmp_path):
    bad = _bad(tmp_path)
    other = tmp_path / "q.txt.llmz"
    other.write_bytes(packed.read_bytes())
    r = invoke(["-d", str(packed), str(bad), str(other)])
    assert r.exit_code == 1
    assert r.stderr.startswith(f"llmzip: {bad}: ") and r.stderr.count("\n") == 1, r.stderr
    original = text_file.read_bytes()
    assert (tmp_path / "p.txt").read_bytes() == original
    assert (tmp_path / "q.txt").read_bytes() == original
    assert not (tmp_path / "bad.txt").exists()


def test_compress_several_files_one_missing(tiny_env, text_file, tmp_path):
    other = tmp_path / "b.txt"
    other.write_bytes(b"second file")
    missing = tmp_path / "missing.txt"
    r = invoke(["compress", *OPTS, str(missing), str(text_file), str(other)])
    assert r.exit_code == 1
    assert r.stderr.startswith(f"llmzip: {missing}: No such file"), r.stderr
    assert r.stderr.count("\n") == 1
    assert Path(f"{text_file}.llmz").exists() and Path(f"{other}.llmz").exists()


@pytest.mark.parametrize("flags", [["-o", "out"], ["-c"], ["--rm"]])
def test_test_refuses_output_flags(tiny_env, packed, tmp_path, monkeypatch, flags):
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.iterdir())
    for argv in (["test", *flags, str(packed)], ["-t", *flags, str(packed)]):
        r = invoke(argv)
        assert r.exit_code == 2, r.output
        assert r.stdout_bytes == b""
    assert sorted(tmp_path.iterdir()) == before


def test_rm_keeps_the_input_when_the_output_is_not_a_regular_file(tiny_env, text_file,
                                                                  tmp_path):
    dev = _fake_null(tmp_path)
    r = invoke(["compress", *OPTS, "--rm", "-o", str(dev), str(text_file)])
    assert r.exit_code == 0, r.output
    assert text_file.exists() and "kept" in r.stderr
