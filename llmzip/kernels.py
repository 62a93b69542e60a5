"""Integer matrix products that give the same integers on every machine.

``products(a, w)`` returns ``a @ w.T`` for int8-valued operands, every entry the exact integer
dot product rounded once to float32 (round to nearest even: the same rounding an int32 -> float32
conversion and a correctly rounded float32 addition of two exact parts make). Two kernels compute
it; both give the same bits, so which one ran is never recorded in a file:

- ``int8``: ``torch._int_mm`` (int8 x int8 -> int32). Exact where oneDNN uses VNNI or AMX, and on
  CUDA; elsewhere (AVX2, generic kernels) it saturates 16-bit intermediate sums and returns wrong
  integers. It is used only after :func:`int8_is_exact` checked it on this device at start-up.
- ``float32``: a float32 GEMM of integer-valued operands. Every partial sum is an integer below
  2**24 as long as ``|a| <= 128``, ``|w| <= 127`` and the inner dimension is at most
  :data:`F32_CHUNK` (128 * 127 * 1032 < 2**24), so the result is exact in any summation order,
  with or without FMA, on any BLAS or GPU (TF32 off). Longer inner dimensions are split into
  chunks; two chunk results are added in float32 (one correctly rounded addition of exact
  integers), more in float64 (exact) and then rounded once.
"""

from __future__ import annotations

import os
from functools import cache

import numpy as np
import torch

A_MAX = 128  # |activation piece| (int8)
W_MAX = 127  # |weight| (int8, symmetric)
F32_CHUNK = (1 << 24) // (A_MAX * W_MAX)  # 1032: inner dimension one float32 GEMM keeps exact
KERNEL_ENV = "LLMZIP_KERNEL"  # "float32" forces the float32 kernel (tests, benchmarks)


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
    if os.environ.get(KERNEL_ENV) == "float32":
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


class Products:
    """The exact product kernel chosen for a device; holds each weight matrix in the form its
    kernel reads (int8 for ``int8``, float32 for ``float32``)."""

    def __init__(self, device: str | torch.device) -> None:
        self.device = torch.device(device)
        self.name = "int8" if int8_is_exact(self.device.type) else "float32"

    def prepare(self, w8: torch.Tensor) -> torch.Tensor:
        """int8 weights [N, K] -> the operand ``__call__`` takes ([K, N] view)."""
        w8 = w8.to(self.device)
        if self.name == "int8":
            return w8.T  # column-major [K, N]: what oneDNN reads fastest
        return w8.to(torch.float32).T.contiguous()

    def __call__(self, a8: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """a8 [M, K] int8-valued (int8 for ``int8``, else float32) -> [M, N] float32."""
        if self.name == "int8":
            return int8_products(a8, w)
        return float32_products(a8, w)

    def exact(self, a8: torch.Tensor, w: torch.Tensor,
              out: torch.Tensor | None = None) -> torch.Tensor:
        """Like ``__call__`` but int32 from the ``int8`` kernel (the exact sums, which the
        caller rounds to float32 itself: fused.linear_output), into ``out`` (int32) if given."""
        if self.name == "int8":
            return torch._int_mm(a8, w) if out is None else torch._int_mm(a8, w, out=out)
        return float32_products(a8, w)

    def activation_dtype(self) -> torch.dtype:
        return torch.int8 if self.name == "int8" else torch.float32


def sqrt(x: torch.Tensor) -> torch.Tensor:
    """The correctly rounded (IEEE 754) square root, element by element. ``torch.sqrt`` is not
    one on the CPU: torch 2.13's CPU kernel is one ulp off on ~0.8% of float32 and float64
    inputs (measured on AVX-512 and with ATEN_CPU_CAPABILITY=avx2 or default), while CUDA's
    sqrt is correctly rounded. numpy's is the hardware instruction, correctly rounded."""
    if x.is_cuda:
        return torch.sqrt(x)
    return torch.from_numpy(np.sqrt(x.cpu().numpy())).to(x.device)


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
