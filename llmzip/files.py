"""File handling policy: stdin/stdout, refusing terminals, atomic outputs, cleanup on signals.

Invariants: an output file appears under its final name only complete and verified (it is
written to a temporary file in the same directory and renamed); an existing file is replaced
only when forced; on an error, Ctrl-C (SIGINT), SIGTERM or SIGHUP the temporary file is
removed (SIGKILL cannot be caught: its temporary stays, under a hidden ``.NAME.*.tmp``); a
source file is removed (``--rm``) only after its output was verified.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from llmzip.errors import LlmzipError

SUFFIX = ".llmz"
_TEMPORARIES: set[str] = set()


def _on_signal(signum, frame) -> None:  # pragma: no cover - exercised in subprocess tests
    """Remove the temporaries, say so, and exit at once (128 + signal number).

    Raising an exception here instead could be lost: if the signal lands while Python runs a
    ``__del__`` or a callback, the exception is printed as "ignored" and the work goes on
    (seen once in CI: SIGINT did not stop a compression within 60 s). Exiting with
    ``os._exit`` also skips interpreter shutdown, which has been seen to be slow."""
    remove_temporaries()
    with contextlib.suppress(OSError):
        os.write(2, b"llmzip: interrupted\n")
    os._exit(128 + signum)


def install_signal_handlers() -> None:
    """Ctrl-C (SIGINT), SIGTERM and SIGHUP (terminal closed) remove the temporaries and exit
    instead of killing outright."""
    with contextlib.suppress(ValueError):  # not in the main thread
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), _on_signal)


def remove_temporaries() -> None:
    for name in list(_TEMPORARIES):
        with contextlib.suppress(OSError):
            os.unlink(name)
        _TEMPORARIES.discard(name)


def is_stdio(path: str | None) -> bool:
    return path is None or path == "-"


@contextlib.contextmanager
def open_input(path: str | None) -> Iterator[BinaryIO]:
    if is_stdio(path):
        yield sys.stdin.buffer
        return
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except IsADirectoryError:
        raise LlmzipError(f"{path}: is a directory") from None
    except OSError as e:
        raise LlmzipError(f"{path}: {e.strerror}") from None
    try:
        yield f
    finally:
        f.close()


def refuse_terminal(stream: BinaryIO, what: str) -> None:
    """Compressed data is never written to, nor read from, a terminal."""
    if stream.isatty():
        raise LlmzipError(f"{what}; use -f to force, or -h for help")


@contextlib.contextmanager
def atomic_output(path: str, force: bool) -> Iterator[BinaryIO]:
    """A temporary file in the target's directory, renamed to ``path`` on success only."""
    target = Path(path)
    if target.exists() and not force:
        raise LlmzipError(f"{path}: already exists; use -f to overwrite")
    if target.is_dir():
        raise LlmzipError(f"{path}: is a directory")
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise LlmzipError(f"{path}: cannot create output: {e.strerror}") from None
    _TEMPORARIES.add(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)  # fails if the target appeared meanwhile
            except FileExistsError:
                raise LlmzipError(f"{path}: already exists; use -f to overwrite") from None
            except OSError:  # file systems without hard links
                os.replace(tmp, target)
            os.unlink(tmp)
    except OSError as e:
        raise LlmzipError(f"{path}: {e.strerror or e}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _TEMPORARIES.discard(tmp)


def compressed_name(path: str) -> str:
    return path + SUFFIX


def decompressed_name(path: str) -> str:
    if not path.endswith(SUFFIX) or len(Path(path).name) == len(SUFFIX):
        raise LlmzipError(f"{path}: unknown suffix (expected {SUFFIX}); use -o or -c")
    return path[: -len(SUFFIX)]


def input_size(path: str | None) -> int | None:
    if is_stdio(path):
        return None
    try:
        return os.stat(path).st_size
    except OSError:
        return None
