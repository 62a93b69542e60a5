"""Reliability (issue 7): unwritable or full outputs, --rm, kills, corruption, the model cache.

Every failure must be one line on stderr starting "llmzip: ", exit status 1, no traceback, and
no file left behind, neither under the final name nor as a temporary.
"""

from __future__ import annotations

import errno
import io
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

import llmzip
from llmzip.cli import files
from llmzip.codec import stream
from llmzip.errors import ChecksumError, FormatError
from llmzip.format import container as fmt
from tests.helpers import CORPUS, OPTS, ROOT, invoke, one_line_error, subprocess_env


@pytest.fixture
def text_file(tmp_path) -> Path:
    p = tmp_path / "a.txt"
    p.write_bytes(CORPUS.encode()[:700])
    return p


# --- unwritable output directory ---------------------------------------------------------

@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_real(tiny_env, tmp_path):
    src = tmp_path / "in" / "a.txt"
    src.parent.mkdir()
    src.write_bytes(CORPUS.encode()[:300])
    out_dir = tmp_path / "ro"
    out_dir.mkdir()
    out_dir.chmod(0o555)
    try:
        r = invoke(["compress", *OPTS, str(src), "-o", str(out_dir / "a.llmz")])
    finally:
        out_dir.chmod(0o755)
    assert r.exit_code == 1
    one_line_error(r.stderr)
    assert "Permission denied" in r.stderr
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_read_only_directory(tiny_env, text_file, tmp_path, monkeypatch, command):
    """As root a chmod cannot make a directory read-only; refuse the temporary file instead,
    exactly where the operating system would."""
    if command == "decompress":
        packed = tmp_path / "p.llmz"
        packed.write_bytes(llmzip.compress(text_file.read_bytes(), model=tiny_env, window=16,
                                           threads=1))
        argv = ["decompress", str(packed), "-o", str(tmp_path / "out.txt")]
    else:
        argv = ["compress", *OPTS, str(text_file), "-o", str(tmp_path / "out.llmz")]
    before = sorted(tmp_path.iterdir())

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    r = invoke(argv)
    assert r.exit_code == 1
    one_line_error(r.stderr)
    assert "out." in r.stderr and "Permission denied" in r.stderr
    assert sorted(tmp_path.iterdir()) == before


# --- full disk ---------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_stdout_to_dev_full(tiny_model, tmp_path, command):
    data = CORPUS.encode() * 5  # several frames: the first one written fails
    if command == "compress":
        argv, stdin = ["compress", *OPTS, "--frame-size", "2000", "-c"], data
    else:
        argv = ["decompress", "-c"]
        stdin = llmzip.compress(data, model=tiny_model, window=16, threads=1, frame_size=2000)
    with open("/dev/full", "wb") as full:
        r = subprocess.run([sys.executable, "-m", "llmzip", *argv], input=stdin, stdout=full,
                           stderr=subprocess.PIPE, env=subprocess_env(tiny_model), timeout=300)
    assert r.returncode == 1
    one_line_error(r.stderr.decode())
    assert "No space left on device" in r.stderr.decode()


class _FillingFile(io.RawIOBase):
    """A file that takes ``room`` bytes, then fails like a full disk."""

    def __init__(self, raw, room: int) -> None:
        self.raw, self.room = raw, room

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if len(b) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(b)
        return self.raw.write(b)

    def fileno(self) -> int:
        return self.raw.fileno()

    def close(self) -> None:
        self.raw.close()
        super().close()


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_full_disk_file_output(tiny_env, tmp_path, monkeypatch, command):
    src = tmp_path / "a.txt"
    src.write_bytes(CORPUS.encode() * 3)
    if command == "decompress":
        packed = tmp_path / "a.txt.llmz"
        packed.write_bytes(llmzip.compress(src.read_bytes(), model=tiny_env, window=16,
                                           threads=1, frame_size=256))
        src.unlink()
        argv = ["decompress", str(packed)]
    else:
        argv = ["compress", *OPTS, "--frame-size", "256", str(src)]
    before = sorted(tmp_path.iterdir())
    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        if mode == "wb":  # the temporary output file of files.atomic_output
            return io.BufferedWriter(_FillingFile(f, room=300), buffer_size=64)
        return f

    monkeypatch.setattr(files.os, "fdopen", fdopen)
    r = invoke(argv)
    assert r.exit_code == 1
    one_line_error(r.stderr)
    assert "No space left on device" in r.stderr
    assert sorted(tmp_path.iterdir()) == before


# --- --rm --------------------------------------------------------------------------------

def test_rm_keeps_source_when_verification_fails(tiny_env, text_file, monkeypatch):
    original = text_file.read_bytes()
    real = stream.decompress_stream

    def failing_verify(src, dst, **kwargs):
        real(src, dst, **kwargs)
        raise ChecksumError("checksum mismatch in frame 1: the file is corrupt")

    monkeypatch.setattr(stream, "decompress_stream", failing_verify)
    r = invoke(["compress", *OPTS, "--rm", str(text_file)])
    assert r.exit_code == 1
    one_line_error(r.stderr)
    assert "verification failed" in r.stderr
    assert text_file.read_bytes() == original
    assert sorted(p.name for p in text_file.parent.iterdir()) == [text_file.name]


def test_rm_after_failed_decompression_keeps_source(tiny_env, text_file, tmp_path):
    packed = tmp_path / "b.txt.llmz"
    blob = bytearray(llmzip.compress(text_file.read_bytes(), model=tiny_env, window=16,
                                     threads=1))
    blob[-1] ^= 0x01  # the whole-file CRC
    packed.write_bytes(bytes(blob))
    r = invoke(["decompress", "--rm", str(packed)])
    assert r.exit_code == 1
    one_line_error(r.stderr)
    assert packed.read_bytes() == bytes(blob)
    assert not (tmp_path / "b.txt").exists()


# --- kills -------------------------------------------------------------------------------

def _start_and_wait_for_a_frame(tiny_model, tmp_path):
    """A compression that has written at least one frame to its temporary file."""
    src = tmp_path / "big.txt"
    src.write_bytes(CORPUS.encode() * 400)
    proc = subprocess.Popen([sys.executable, "-m", "llmzip", "compress", "--context", "16",
                             "--streams", "1", "--threads", "1", "--frame-size", "1000",
                             str(src)], env=subprocess_env(tiny_model), stderr=subprocess.PIPE)
    deadline = time.time() + 600  # a hang guard: a loaded machine may take long to start
    header = 60  # a header is ~35 bytes; more means a frame was written
    while time.time() < deadline and proc.poll() is None:
        tmp = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        if tmp and tmp[0].stat().st_size > header:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "compression ended before it could be killed"
    assert tmp and tmp[0].stat().st_size > header, "no frame was written in time"
    return proc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=lambda s: s.name)
def test_killed_midway_leaves_nothing(tiny_model, tmp_path, sig):
    proc = _start_and_wait_for_a_frame(tiny_model, tmp_path)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]
    assert err.decode() == "llmzip: interrupted\n"


def test_sigkill_midway_leaves_no_output_file(tiny_model, tmp_path):
    """SIGKILL cannot be caught: the temporary file stays, but nothing under the final name."""
    proc = _start_and_wait_for_a_frame(tiny_model, tmp_path)
    proc.kill()
    proc.wait(timeout=300)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert "big.txt.llmz" not in left
    assert all(n == "big.txt" or (n.startswith(".big.txt.llmz.") and n.endswith(".tmp"))
               for n in left)


# --- corruption names the frame; `test` writes nothing -----------------------------------

def _frames_blob(model: str) -> tuple[bytes, list[tuple[int, int, fmt.Frame]]]:
    """A file of four frames and, per frame, its (start, end) offsets and the frame."""
    noise = random.Random(0).randbytes(256)  # incompressible: stored (lzma shrinks range(256))
    data = CORPUS.encode()[:900] + noise  # coded frames, then a stored one
    blob = llmzip.compress(data, model=model, window=16, threads=1, streams=2,
                           frame_size=300)
    f = io.BytesIO(blob)
    header = fmt.Header.read(f)
    spans = []
    while True:
        start = f.tell()
        frame = fmt.read_frame(f, header)
        if isinstance(frame, fmt.End):
            return blob, spans
        spans.append((start, f.tell(), frame))


@pytest.mark.parametrize("which", [1, 2, 4])
def test_corruption_names_the_frame(tiny_model, which):
    blob, spans = _frames_blob(tiny_model)
    assert len(spans) == 4 and isinstance(spans[3][2], fmt.StoredFrame)
    assert all(isinstance(s[2], fmt.CodedFrame) for s in spans[:3])
    _, end, frame = spans[which - 1]
    body = len(frame.payload if isinstance(frame, fmt.CodedFrame) else frame.data)
    bad = bytearray(blob)
    bad[end - body // 2] ^= 0x10  # the middle of the payload (coded) or of the data (stored)
    with pytest.raises(FormatError, match=rf"\bframe {which}\b"):
        llmzip.decompress(bytes(bad), model=tiny_model)


def test_forged_token_count_is_refused_before_decoding(tiny_model):
    """The range decoder never runs out of input: a count the encoder cannot have written
    (a coded frame denser than codec.BINARY_TOKENS_PER_BYTE) must not be decoded at all."""
    blob, spans = _frames_blob(tiny_model)
    start, end, frame = spans[1]
    assert isinstance(frame, fmt.CodedFrame)
    forged = fmt.CodedFrame(frame.length, frame.crc, (frame.length,) * len(frame.tokens),
                            frame.payload)
    bad = blob[:start] + fmt.frame_bytes(forged) + blob[end:]
    with pytest.raises(FormatError, match=r"frame 2: more tokens"):
        llmzip.decompress(bad, model=tiny_model)


def test_test_command_writes_nothing(tiny_env, tmp_path, monkeypatch):
    blob, spans = _frames_blob(tiny_env)
    good, bad = tmp_path / "good.txt.llmz", tmp_path / "bad.txt.llmz"
    good.write_bytes(blob)
    broken = bytearray(blob)
    broken[spans[1][1] - len(spans[1][2].payload) // 2] ^= 0x10
    bad.write_bytes(bytes(broken))
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.iterdir())
    r = invoke(["test", str(good)])
    assert r.exit_code == 0 and r.stdout_bytes == b"" and "OK" in r.stderr
    r = invoke(["-t", str(bad)])
    assert r.exit_code == 1 and r.stdout_bytes == b""
    one_line_error(r.stderr)
    assert "frame 2" in r.stderr
    assert sorted(tmp_path.iterdir()) == before


# --- model cache -------------------------------------------------------------------------

_CONVERT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from llmzip.model import convert

    me, other = Path(sys.argv[1]), Path(sys.argv[2])

    def slow_convert(gguf, out):  # what _convert_gguf writes, slowly, fingerprint last
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        time.sleep(0.5)
        (out / "model.safetensors").write_bytes(b"w" * 100000)
        (out / "fingerprint").write_text("ab" * 32)

    convert._convert_gguf = slow_convert
    me.touch()
    while not other.exists():  # both processes convert at the same time
        time.sleep(0.01)
    print(convert.converted_dir(Path(sys.argv[3])))
""")


def test_concurrent_model_cache_creation(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF fake model")
    cache = tmp_path / "cache"
    env = {**os.environ, "LLMZIP_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    a, b = tmp_path / "ready-a", tmp_path / "ready-b"
    procs = [subprocess.Popen([sys.executable, "-c", _CONVERT, str(x), str(y), str(gguf)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for x, y in ((a, b), (b, a))]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err
    paths = {out.strip() for out, _ in results}
    assert len(paths) == 1
    entry = Path(paths.pop())
    assert entry.parent == cache / "converted"
    assert sorted(p.name for p in entry.iterdir()) == ["config.json", "fingerprint",
                                                      "model.safetensors"]
    assert (entry / "model.safetensors").read_bytes() == b"w" * 100000
    assert (entry / "fingerprint").read_text() == "ab" * 32
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # no temporaries left
