"""File policy, all of it (as zstd's fileio.c): names, stdin/stdout, terminals, devices,
temporary files and renames, modes and times, --rm, refusals, the null sink of ``test``, and
how a run over several files reports and goes on. main.py turns flags into :class:`Prefs` and
calls :func:`process`; the codec work is a callback that reads one stream and writes another
and knows no file names. Imports nothing heavy (no torch): ``--help`` and ``info`` stay fast.

Invariants:
- An output file appears under its final name only complete (a temporary file in the same
  directory, renamed on success); an existing regular file is replaced only with -f.
- A device, FIFO or other non-regular output is written into, never replaced (gzip, zstd).
- A new output file gets its input's permission bits and access/modification times (gzip,
  xz, zstd); from stdin it gets 0666 less the umask, and the current time.
- An input is removed (--rm) only after its output was verified, and only when that output
  is a regular file: stdout and devices keep it.
- Compressed data is never written to, nor read from, a terminal unless -f.
- On an error, Ctrl-C (SIGINT), SIGTERM or SIGHUP the temporary file is removed (SIGKILL
  cannot be caught: its temporary stays, under a hidden ``.NAME.*.tmp``).
- Several inputs: each failure is one line on stderr naming its file, and the run goes on.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from llmzip.errors import LlmzipError, UsageError

SUFFIX = ".llmz"
COMPRESS, DECOMPRESS, TEST = "compress", "decompress", "test"
_TEMPORARIES: set[str] = set()

# work(src, fin, fout): code everything readable from fin into fout (src: the input's path,
# None for stdin; for messages only).
Work = Callable[[str | None, BinaryIO, BinaryIO], None]
# verify(path): decode a finished output file; raises an LlmzipError if it does not match.
Verify = Callable[[str], None]


class FileError(LlmzipError):
    """An error whose message already names the file it is about (so it is not prefixed)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True)
class Prefs:
    """What the command line asked for (zstd's FIO_prefs)."""

    mode: str = COMPRESS  # COMPRESS, DECOMPRESS or TEST (decompress into a null sink)
    output: str | None = None  # -o; "-" is stdout
    to_stdout: bool = False  # -c
    force: bool = False  # -f: replace files, allow terminals, compress .llmz files again
    keep: bool = False  # -k (the default; only checked against --rm)
    remove: bool = False  # --rm
    quiet: bool = False  # -q: no warnings (errors are still reported)


# --- signals -------------------------------------------------------------------------------

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


def install_signal_handlers() -> dict[int, Any]:
    """Ctrl-C (SIGINT), SIGTERM and SIGHUP (terminal closed) remove the temporaries and exit
    with one line instead of a traceback. Returns the previous handlers, for
    :func:`restore_signal_handlers`."""
    previous: dict[int, Any] = {}
    with contextlib.suppress(ValueError):  # not in the main thread
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                sig = getattr(signal, name)
                previous[sig] = signal.signal(sig, _on_signal)
    return previous


def restore_signal_handlers(previous: dict[int, Any]) -> None:
    """Put back what :func:`install_signal_handlers` replaced."""
    for sig, handler in previous.items():
        signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def remove_temporaries() -> None:
    for name in list(_TEMPORARIES):
        with contextlib.suppress(OSError):
            os.unlink(name)
        _TEMPORARIES.discard(name)


# --- names, inputs, outputs ----------------------------------------------------------------

def is_stdio(path: str | None) -> bool:
    return path is None or path == "-"


def compressed_name(path: str) -> str:
    return path + SUFFIX


def decompressed_name(path: str) -> str:
    if not path.endswith(SUFFIX) or len(Path(path).name) == len(SUFFIX):
        raise FileError(path, f"unknown suffix (expected {SUFFIX}); use -o or -c")
    return path[: -len(SUFFIX)]


def input_size(path: str | None) -> int | None:
    """The size of a regular input file; None for stdin or where it cannot be known."""
    if is_stdio(path):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


@contextlib.contextmanager
def open_input(path: str | None) -> Iterator[BinaryIO]:
    if is_stdio(path):
        yield sys.stdin.buffer
        return
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except IsADirectoryError:
        raise FileError(path, "is a directory") from None
    except OSError as e:
        raise FileError(path, e.strerror or str(e)) from None
    try:
        yield f
    finally:
        f.close()


def refuse_terminal(stream: BinaryIO, what: str) -> None:
    """Compressed data is never written to, nor read from, a terminal."""
    if stream.isatty():
        raise LlmzipError(f"{what}; use -f to force, or -h for help")


class NullSink(io.RawIOBase):
    """Where ``test`` writes: takes everything, keeps nothing."""

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        return len(b)


def replaces(path: str) -> bool:
    """Whether an output to ``path`` is a new or replaced regular file (temporary + rename);
    False for a device, FIFO or other non-regular file, which is written into."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return True
    except OSError as e:
        raise FileError(path, e.strerror or str(e)) from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str, force: bool, like: os.stat_result | None = None
                  ) -> Iterator[BinaryIO]:
    """A temporary file in the target's directory, renamed to ``path`` on success only, with
    the permission bits and times of ``like`` (the input; None: 0666 less the umask, now)."""
    target = Path(path)
    if target.exists() and not force:
        raise FileError(path, "already exists; use -f to overwrite")
    if target.is_dir():
        raise FileError(path, "is a directory")
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise FileError(path, f"cannot create output: {e.strerror}") from None
    _TEMPORARIES.add(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if like is None:
            os.chmod(tmp, 0o666 & ~_umask())
        else:
            os.chmod(tmp, stat.S_IMODE(like.st_mode) & 0o777)
            os.utime(tmp, ns=(like.st_atime_ns, like.st_mtime_ns))
        if force:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)  # fails if the target appeared meanwhile
            except FileExistsError:
                raise FileError(path, "already exists; use -f to overwrite") from None
            except OSError:  # file systems without hard links
                os.replace(tmp, target)
            os.unlink(tmp)
    except OSError as e:
        raise FileError(path, e.strerror or str(e)) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _TEMPORARIES.discard(tmp)


@contextlib.contextmanager
def _into(path: str) -> Iterator[BinaryIO]:
    """A device, FIFO or other non-regular file, opened and written into (never replaced)."""
    try:
        f = open(path, "wb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise FileError(path, e.strerror or str(e)) from None
    with f:
        yield f


# --- one run over the inputs ---------------------------------------------------------------

def _say(message: str) -> None:
    sys.stderr.write(f"llmzip: {message}\n")
    sys.stderr.flush()


def for_each(inputs: Sequence[str], action: Callable[[str | None], None]) -> int:
    """Call ``action(src)`` for every input (``src`` None for stdin; no inputs: stdin). Each
    failure is reported as one line naming its input, and the run goes on. Returns the number
    of inputs that failed."""
    failed = 0
    for path in inputs or ("-",):
        src = None if is_stdio(path) else path
        name = src or "stdin"
        try:
            action(src)
        except BrokenPipeError:  # the reader is gone: nothing more can be written
            raise
        except FileError as e:
            failed += 1
            _say(str(e))
        except LlmzipError as e:
            failed += 1
            _say(f"{name}: {e}")
        except OSError as e:
            failed += 1
            _say(f"{e.filename or name}: {e.strerror or e}")
    return failed


def check_usage(inputs: Sequence[str], prefs: Prefs) -> None:
    """UsageError for flags that do not fit together, before any work is done."""
    if prefs.mode == TEST and (prefs.output or prefs.to_stdout or prefs.remove):
        raise UsageError("test writes nothing: -o, -c and --rm do not apply")
    if prefs.output and len(inputs) > 1:
        raise UsageError("-o takes one input file")
    if prefs.output and prefs.to_stdout:
        raise UsageError("-o and -c exclude each other")
    if prefs.keep and prefs.remove:
        raise UsageError("-k and --rm exclude each other")


def process(inputs: Sequence[str], prefs: Prefs, work: Work, verify: Verify | None = None
            ) -> int:
    """Compress, decompress or test every input as ``prefs`` say, calling ``work`` for the
    data; ``verify`` decodes a finished compressed file before --rm removes its input.
    Returns the number of inputs that failed (each reported); UsageError first if the flags
    do not fit together."""
    check_usage(inputs, prefs)
    return for_each(inputs, lambda src: _process_one(src, prefs, work, verify))


def _destination(src: str | None, prefs: Prefs) -> str | None:
    """The output path; None for stdout."""
    if prefs.to_stdout or prefs.output == "-" or (src is None and not prefs.output):
        return None
    if prefs.output:
        return prefs.output
    assert src is not None
    return compressed_name(src) if prefs.mode == COMPRESS else decompressed_name(src)


def _process_one(src: str | None, prefs: Prefs, work: Work, verify: Verify | None) -> None:
    compressing = prefs.mode == COMPRESS
    if compressing and src is not None and src.endswith(SUFFIX) and not prefs.force:
        raise FileError(src, f"already has {SUFFIX} suffix -- unchanged")
    dst = None if prefs.mode == TEST else _destination(src, prefs)
    with open_input(src) as fin:
        if not compressing and not prefs.force:
            refuse_terminal(fin, "compressed data not read from a terminal")
        if prefs.mode == TEST:
            work(src, fin, NullSink())
            return
        if dst is None:
            out = sys.stdout.buffer
            if compressing and not prefs.force:
                refuse_terminal(out, "compressed data not written to a terminal")
            work(src, fin, out)
            out.flush()
            regular = False
        else:
            if src is not None and os.path.exists(dst) and os.path.samefile(src, dst):
                raise FileError(src, "input and output are the same file")
            regular = replaces(dst)
            if regular:
                like = os.fstat(fin.fileno()) if src is not None else None
                if like is not None and not stat.S_ISREG(like.st_mode):
                    like = None  # a FIFO or device input has no mode or time to pass on
                with atomic_output(dst, prefs.force, like) as out:
                    work(src, fin, out)
            else:
                with _into(dst) as out:
                    if compressing and not prefs.force:
                        refuse_terminal(out, "compressed data not written to a terminal")
                    work(src, fin, out)
    if prefs.remove and src is not None:
        _remove_input(src, dst if regular else None, verify, prefs)


def _remove_input(src: str, dst: str | None, verify: Verify | None, prefs: Prefs) -> None:
    """--rm: remove ``src`` once its regular output file ``dst`` is verified (decompressed
    outputs were verified by their checksums while written); dst None keeps it."""
    if dst is None:
        if not prefs.quiet:
            _say(f"{src}: kept (--rm removes an input only when its output is a regular file)")
        return
    if verify is not None:
        try:
            verify(dst)
        except LlmzipError:
            os.unlink(dst)
            raise FileError(dst, f"verification failed; {src} was kept") from None
    os.unlink(src)
