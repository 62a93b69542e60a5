"""Integer matrix products that give the same integers on every machine, and the choice among
them by exactness and speed.

``products(a, w)`` returns ``a @ w.T`` for integer-valued operands, every entry the exact integer
dot product rounded once to float32 (round to nearest even: the same rounding an int32 -> float32
conversion and a correctly rounded float32 addition of two exact parts make). Three kernels
compute it; all give the same bits, so which one ran is never recorded in a file:

- ``int8``: ``torch._int_mm`` (int8 x int8 -> int32). Exact where oneDNN uses VNNI or AMX, and on
  CUDA; on some CPUs (AVX2 through oneDNN) it saturates 16-bit intermediate sums and returns
  wrong integers, on others (no oneDNN kernel) it is exact but torch's reference loop, 30x slower
  than the float32 GEMM. It is a candidate only after :func:`int8_is_exact` checked it here.
- ``int16``: intmm.py's numba kernel (16-bit activations x int8 weights, ``pmaddwd``): one
  product per activation row where the other two multiply its two int8 pieces. The CPU only.
- ``float32``: a float32 GEMM of integer-valued operands. Every partial sum is an integer below
  2**24 as long as ``|a| <= 128``, ``|w| <= 127`` and the inner dimension is at most
  :data:`F32_CHUNK` (128 * 127 * 1032 < 2**24), so the result is exact in any summation order,
  with or without FMA, on any BLAS or GPU (TF32 off). Longer inner dimensions are split into
  chunks; two chunk results are added in float32 (one correctly rounded addition of exact
  integers), more in float64 (exact) and then rounded once.

:func:`choose` picks, at start-up, the fastest of the kernels that passed their exactness probe,
timed on the model's own matrix shapes, and remembers it per machine in the llmzip cache
(``kernels.json``); ``LLMZIP_KERNEL`` forces one (tests, benchmarks).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

A_MAX = 128  # |activation piece| (int8)
W_MAX = 127  # |weight| (int8, symmetric)
F32_CHUNK = (1 << 24) // (A_MAX * W_MAX)  # 1032: inner dimension one float32 GEMM keeps exact
KERNEL_ENV = "LLMZIP_KERNEL"  # "float32", "int8" or "int16" forces that kernel
KERNELS = ("int8", "int16", "float32")


def _chunks(k: int) -> list[tuple[int, int]]:
    parts = -(-k // F32_CHUNK)
    size = -(-k // parts)
    return [(i, min(k, i + size)) for i in range(0, k, size)]


def float32_products(a: torch.Tensor, w_t: torch.Tensor) -> torch.Tensor:
    """a [M, K] float32 (int8 values), w_t [K, N] float32 (int8 values) -> [M, N] float32."""
    k = a.shape[1]
    if k <= F32_CHUNK:
        return a @ w_t
    parts = [a[:, i:j] @ w_t[i:j] for i, j in _chunks(k)]
    if len(parts) == 2:
        return parts[0] + parts[1]
    total = parts[0].double()
    for p in parts[1:]:
        total += p
    return total.float()


def int8_products(a: torch.Tensor, w_t: torch.Tensor) -> torch.Tensor:
    """a [M, K] int8, w_t [K, N] int8 -> [M, N] float32 (exact int32, rounded once)."""
    return torch._int_mm(a, w_t).float()


@cache
def int8_is_exact(device: str) -> bool:
    """Whether ``torch._int_mm`` returns exact sums here: a start-up probe with the extreme
    values (where a 16-bit saturating path fails) and random ones, on the shapes the model
    uses, against an exact float64 reference."""
    if os.environ.get(KERNEL_ENV) in ("float32", "int16"):
        return False
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(1234)
    try:
        for m, k, n in ((2, 64, 16), (34, 576, 96), (80, 1536, 64), (17, 1040, 40)):
            a = torch.randint(-128, 128, (m, k), generator=gen, dtype=torch.int8)
            w = torch.randint(-127, 128, (n, k), generator=gen, dtype=torch.int8)
            a[0] = 127
            a[1] = -128
            w[0] = 127
            w[1] = -127
            ref = a.double() @ w.double().T
            got = torch._int_mm(a.to(dev), w.to(dev).T).cpu()
            if got.dtype != torch.int32 or not torch.equal(got.double(), ref):
                return False
    except (RuntimeError, NotImplementedError):
        return False
    return True


@cache
def int16_is_exact() -> bool:
    """Whether intmm's kernel runs here (numba) and gives the exact int64 products on its
    probe: the int16 and int8 extremes (the largest sums an int32 block may hold), several
    blocks, odd inner sizes, columns and rows that fill no tile."""
    from llmzip.numeric import intmm

    if not intmm.available:
        return False
    rng = np.random.default_rng(1234)
    try:
        for m, k, n in ((1, 2, 1), (5, 577, 33), (9, 1536, 40), (4, 2 * 2 * intmm.BLOCK + 3, 17)):
            q = rng.integers(-32767, 32768, (m, k)).astype(np.int16)
            w = rng.integers(-127, 128, (n, k)).astype(np.int8)
            q[0], w[0] = 32767, 127
            if m > 1:
                q[1], w[min(1, n - 1)] = -32767, -127
            ref = q.astype(np.int64) @ w.astype(np.int64).T
            if not np.array_equal(intmm.product(q, intmm.block(w), n, 2), ref):
                return False
    except Exception:  # a numba or LLVM error: not a candidate
        return False
    return True


def exact_kernels(device: str) -> list[str]:
    """The kernels whose exactness probe passed on this device, in :data:`KERNELS` order."""
    found = []
    if int8_is_exact(torch.device(device).type):
        found.append("int8")
    if torch.device(device).type == "cpu" and int16_is_exact():
        found.append("int16")
    return [*found, "float32"]


@dataclass(frozen=True)
class Blocked:
    """A weight matrix in intmm.block's form with its column count."""

    w: np.ndarray  # [ceil(N / 16), ceil(K / 2), 32] int8
    n: int


class Products:
    """The exact product kernel ``name`` on a device (None: :func:`choose`'s); holds each weight
    matrix in the form its kernel reads: int8 for ``int8`` and ``int16`` (never float32 but for
    the ``float32`` kernel)."""

    def __init__(self, device: str | torch.device, name: str | None = None,
                 shapes: Sequence[tuple[int, int]] = (),
                 rows: Sequence[int] | None = None) -> None:
        self.device = torch.device(device)
        self.name = name or choose(self.device.type, shapes, rows or TIMED_ROWS)

    def prepare(self, w8: torch.Tensor) -> torch.Tensor | Blocked:
        """int8 weights [N, K] -> the operand ``__call__`` takes."""
        if self.name == "int16":
            from llmzip.numeric import intmm

            return Blocked(intmm.block(w8.cpu().numpy()), w8.shape[0])
        w8 = w8.to(self.device)
        if self.name == "int8":
            return w8.T  # column-major [K, N]: what oneDNN reads fastest
        return w8.to(torch.float32).T.contiguous()

    def __call__(self, a8: torch.Tensor, w) -> torch.Tensor:
        """a8 [M, K] integer-valued (:meth:`activation_dtype`) -> [M, N] float32."""
        if self.name == "int16":
            from llmzip.numeric import intmm

            p = intmm.product(a8.numpy(), w.w, w.n, max(1, torch.get_num_threads()))
            return torch.from_numpy(p.astype(np.float32))  # one rounding of each int64
        if self.name == "int8":
            return int8_products(a8, w)
        return float32_products(a8, w)

    def exact(self, a8: torch.Tensor, w: torch.Tensor,
              out: torch.Tensor | None = None) -> torch.Tensor:
        """Like ``__call__`` but int32 from the ``int8`` kernel (the exact sums, which the
        caller rounds to float32 itself: linear.linear_output), into ``out`` (int32) if given.
        (Not for ``int16``: linear.linear takes intmm's own path.)"""
        if self.name == "int8":
            return torch._int_mm(a8, w) if out is None else torch._int_mm(a8, w, out=out)
        return float32_products(a8, w)

    def activation_dtype(self) -> torch.dtype:
        return {"int8": torch.int8, "int16": torch.int16}.get(self.name, torch.float32)


# ------------------------------------------------------------------------- the choice

TIMED_ROWS = (1, 8, 128)  # activation rows timed: decoding steps of 1 and 8 streams, a pass ahead
ENCODER_ROWS = (128,)  # the encoder's passes ahead (codec/predictor.py: up to 256 rows)
DECODER_ROWS = (1, 8)  # the decoder's steps: a row per active stream (and a few drafted)


def _machine_key(device: str, shapes: Sequence[tuple[int, int]], threads: int,
                 rows: Sequence[int] = TIMED_ROWS) -> str:
    """What the speed of the kernels depends on: the CPU, the libraries, the thread count,
    the environment that changes their code paths, the shapes and the rows timed."""
    try:
        import numba

        numba_version = numba.__version__
    except ImportError:
        numba_version = "none"
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        cpu = next((x.split(":", 1)[1] for x in lines if x.startswith("model name")), cpu)
        cpu += next((x.split(":", 1)[1] for x in lines if x.startswith(("flags", "Features"))),
                    "")
    except OSError:
        pass
    from llmzip import __version__

    env = [os.environ.get(v, "") for v in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                                           "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")]
    text = json.dumps([device, cpu, torch.__version__, numba_version, __version__, threads,
                       torch.backends.mkldnn.enabled, env, sorted(set(shapes)),
                       *([] if tuple(rows) == TIMED_ROWS else [list(rows)])])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def time_kernel(name: str, device: str, shapes: Sequence[tuple[int, int]],
                rows: Sequence[int] = TIMED_ROWS, repeat: int = 3) -> float:
    """Seconds per activation row of kernel ``name`` over the weight shapes [(N, K), ...]:
    the best of ``repeat`` runs at each row count in ``rows``, per row, summed over them. The
    pieces kernels multiply two rows per activation row; intmm one."""
    gen = torch.Generator().manual_seed(0)
    products = Products(device, name)
    weights = [products.prepare(torch.randint(-127, 128, (n, k), generator=gen,
                                              dtype=torch.int8)) for n, k in shapes]
    total = 0.0
    for m in rows:
        pieces = m if name == "int16" else 2 * m
        acts = [torch.randint(-128, 128, (pieces, k), generator=gen).to(
            products.activation_dtype()).to(products.device) for _, k in shapes]
        best = float("inf")
        for _ in range(repeat + 1):  # (the first run compiles and warms the caches)
            start = time.perf_counter()
            for a, w in zip(acts, weights):
                products(a, w)
            if products.device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        total += best / m
    return total


def fastest(candidates: Sequence[str], timer: Callable[[str], float]) -> tuple[str, dict]:
    """The candidate with the least ``timer(name)`` seconds, and every candidate's time."""
    times = {name: timer(name) for name in candidates}
    return min(candidates, key=lambda name: (times[name], candidates.index(name))), times


def _cache_file():
    from llmzip.cache import cache_dir

    return cache_dir() / "kernels.json"


def choose(device: str, shapes: Sequence[tuple[int, int]] = (),
           rows: Sequence[int] = TIMED_ROWS) -> str:
    """The kernel to use on ``device`` for weight matrices of these shapes [(N, K), ...] and
    activations of these row counts (:data:`ENCODER_ROWS` for the encoder's passes ahead,
    :data:`DECODER_ROWS` for decoding steps): ``LLMZIP_KERNEL`` if set; else the fastest exact
    one (:func:`exact_kernels`, timed by :func:`time_kernel` on the shapes, or on a small
    layer's if none are given), remembered per machine in ``<llmzip cache>/kernels.json``.
    Every choice gives the same bits."""
    forced = os.environ.get(KERNEL_ENV)
    candidates = exact_kernels(device)
    if forced:
        if forced not in candidates:
            from llmzip.errors import LlmzipError

            raise LlmzipError(f"{KERNEL_ENV}={forced}: not an exact kernel here (those are: "
                              f"{', '.join(candidates)})")
        return forced
    if len(candidates) == 1:
        return candidates[0]
    shapes = list(shapes) or [(192, 64), (64, 192)]
    key = _machine_key(device, shapes, torch.get_num_threads(), rows)
    path = _cache_file()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    name = known.get(key, {}).get("kernel") if isinstance(known.get(key), dict) else None
    if name in candidates:
        return name
    name, times = fastest(candidates, lambda k: time_kernel(k, device, shapes, rows))
    known[key] = {"kernel": name, "seconds_per_row": times}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:  # a read-only cache: choose again next time
        pass
    return name


def _numba_threads(threads: int) -> None:
    """The fused kernels' parallel loops (numba) run on at most ``threads`` threads of this
    thread: numba's pool holds one per core, and waking threads that have no chunk to run
    costs a scheduler slice each time when the cores are busy (measured: --threads 1 beside
    another process ran 4x slower)."""
    try:
        import numba
    except ImportError:
        return
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


def configure(device: str, threads: int | None) -> int:
    """Use ``threads`` CPU threads (None: the cores this process may use, at most 16) and no
    reduced-precision float tricks on CUDA. The results never depend on either: every kernel
    here is exact. Returns the thread count."""
    if device == "cuda" and not torch.cuda.is_available():
        from llmzip.errors import LlmzipError

        raise LlmzipError("--device cuda was asked for, but torch sees no CUDA GPU")
    if threads is None:
        threads = max(1, min(len(os.sched_getaffinity(0)), 16))
    _numba_threads(threads)  # first: starting numba's pool may reset OpenMP's thread count
    torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    return threads
