"""Frames coded in parallel (parallel.py): worker processes and Ray give the bytes one process
gives, and a worker that dies is replaced."""

from __future__ import annotations

import lzma
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import llmzip
from llmzip.codec import parallel
from llmzip.errors import LlmzipError
from tests.helpers import DyingWorker, english_text


def test_a_dead_worker_is_replaced_and_order_kept(tmp_path):
    workers = parallel.LocalWorkers(DyingWorker, lambda t: (5, str(tmp_path), True), 2, 1)
    try:
        assert list(workers.map(range(12))) == [2 * i for i in range(12)]
    finally:
        workers.close()
    assert (tmp_path / "died-5").exists()  # it did die, once


def test_a_frame_that_always_kills_its_worker_fails_with_one_line(tmp_path):
    workers = parallel.LocalWorkers(DyingWorker, lambda t: (3, str(tmp_path), False), 2, 1)
    try:
        with pytest.raises(LlmzipError, match="worker process died"):
            list(workers.map(range(6)))
    finally:
        workers.close()


def test_threads_are_shared_out():
    assert parallel.threads_per_worker(2, 3) == 3
    assert parallel.threads_per_worker(10**6, None) == 1


@pytest.fixture(scope="module")
def frames_text() -> bytes:
    return english_text()[:1200]


@pytest.fixture(scope="module")
def one_process(real_model, frames_text) -> bytes:
    blob = llmzip.compress(frames_text, model=real_model, frame_size=400, threads=1)
    assert len(blob) < 0.6 * len(lzma.compress(frames_text))  # the model coded the frames
    return blob


def test_workers_give_the_same_bytes_and_decode(real_model, frames_text, one_process):
    blob = llmzip.compress(frames_text, model=real_model, frame_size=400, workers=2)
    assert blob == one_process
    assert llmzip.decompress(blob, model=real_model, workers=2) == frames_text


def test_ray_cluster_gives_the_same_bytes(real_model, frames_text, one_process):
    pytest.importorskip("ray")
    import ray

    try:
        blob = llmzip.compress(frames_text, model=real_model, frame_size=400,
                               cluster="local", workers=2)
        assert blob == one_process
    finally:
        ray.shutdown()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_cli_survives_a_killed_worker(real_model, frames_text, one_process, tmp_path):
    """SIGKILL one worker of `llmzip compress --workers 2` while it works: the run still
    succeeds, with the same bytes."""
    src = tmp_path / "in.txt"
    src.write_bytes(frames_text)
    proc = subprocess.Popen([sys.executable, "-m", "llmzip", "compress", "-q", "--model",
                             real_model, "--frame-size", "400", "--workers", "2", str(src)],
                            stderr=subprocess.PIPE)
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        workers = [c for c in _children(proc.pid) if _is_worker(c)]
        if workers:
            time.sleep(2.0)  # let it load the model and start a frame
            os.kill(workers[0], signal.SIGKILL)
            killed = workers[0]
        time.sleep(0.1)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()
    assert killed is not None, "the run ended before a worker could be killed"
    assert (tmp_path / "in.txt.llmz").read_bytes() == one_process
