"""The numba set-up every kernel module shares, and the rules that make a kernel give its torch
reference's bits.

The torch code of the engine, the mixer, the bias head and the coder is the specification of
the file format; each numba kernel computes exactly what its reference computes, on numpy
views of the same tensors (zero-copy), so which one ran is never recorded in a file:

- every operation is the one IEEE 754 operation the reference makes, in the reference's dtype
  (float32 constants are written ``F32(...)``: numba would otherwise promote them to float64)
  and in the reference's order; ``np.rint`` is torch.round (half to even);
- no fastmath: nothing is reassociated or contracted into a fused multiply-add (a start-up
  check, :func:`contraction_free`, compares ``a * b + c`` with numpy's separate operations);
- only sums of integers, exact in any order, are reordered (and the products ``256 * x``,
  exact, may be fused).

Kernels are written so that LLVM vectorises them without any fast-math flag: maxima are taken
over the float32 bit patterns as integers (the bits of |x| order like |x|, and
``b ^ ((b >> 31) & 0x7fffffff)`` orders signed floats), exact sums of integers are int64 sums,
table lookups get loops of their own, everything else is element-wise. Outer loops (rows,
heads) are split into one contiguous chunk per thread (:func:`part`, :func:`threads_for`):
every value is computed by one thread in one order, so the thread count changes nothing.

:func:`available` says whether the kernels may be used: numba imports, ``LLMZIP_FUSED`` is not
``0``, and the start-up self-check (codec/selfcheck.py: every kernel against its reference on
small adversarial inputs) passed; else every caller runs its torch code, silently. Compiled
kernels are cached in ``<llmzip cache>/numba`` (numba's ``NUMBA_CACHE_DIR``, unless it is
set; the package's ``__init__`` sets it, before any of its modules imports numba).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np
import torch

ENV = "LLMZIP_FUSED"  # "0": always the torch reference

try:
    import numba
    from numba import njit, prange
except ImportError:  # the torch references only
    numba = None
    prange = range

    def njit(*args, **kwargs):
        return lambda f: f

F32, F64 = np.float32, np.float64
JIT = {"cache": True, "nogil": True, "error_model": "numpy", "boundscheck": False}
PAR = {**JIT, "parallel": True}  # outer loops split into contiguous chunks, one per thread
SIGN = np.int32(0x7FFFFFFF)
TINY = 2.0**-100  # rows whose largest |x| is below this are taken as zero
TINY32 = F32(TINY)
__all__ = ["F32", "F64", "JIT", "PAR", "njit", "numba", "prange"]


@njit(**JIT)
def part(c, chunks, items):
    """The outer iterations [start, stop) of chunk c."""
    return c * items // chunks, (c + 1) * items // chunks


@njit(**JIT)
def float_of(bits, scratch):
    """The float32 with these bits (scratch: an int32 [1] array)."""
    scratch[0] = bits
    return scratch.view(np.float32)[0]


@njit(**JIT)
def absmax(x, scratch):
    """_scale_of's ``x.abs().amax().clamp(min=TINY)`` of a contiguous 1-D float32 array."""
    xi = x.view(np.int32)
    m = np.int32(0)
    for k in range(xi.shape[0]):
        a = xi[k] & SIGN
        if a > m:
            m = a
    v = float_of(m, scratch)
    if v < TINY32:
        v = TINY32
    return v


@njit(**JIT)
def largest(x, scratch):
    """``x.amax()`` of a contiguous 1-D float32 array (not empty, no NaN)."""
    xi = x.view(np.int32)
    m = np.int32(-(1 << 31))
    for k in range(xi.shape[0]):
        b = xi[k]
        key = b ^ ((b >> 31) & SIGN)
        if key > m:
            m = key
    return float_of(m ^ ((m >> 31) & SIGN), scratch)


@njit(**JIT)
def table_index(d, last):
    """A rounded, non-negative table position clamped to the last entry, as an index (NaN:
    the last entry; never an index outside the table)."""
    d = d if d <= last else last
    d = d if d >= 0 else 0
    return np.uint32(np.int32(d))


@njit(cache=True)
def _fma_probe(a, b, c, out):
    """a * b + c, element by element: must be two roundings (no contraction into an FMA)."""
    for i in range(a.shape[0]):
        out[i] = a[i] * b[i] + c[i]



# ------------------------------------------------------------------------------ wrappers

NONE32 = np.zeros(1, np.float32)


NONE64 = np.zeros(1, np.float64)


NONE2D = np.zeros((1, 1), np.float32)

STATE: dict[str, bool | int] = {"off": 0}
_LOCAL = threading.local()  # per thread: scratch buffers that never leave a call
_VIEWS: dict[int, tuple[torch.Tensor, np.ndarray]] = {}  # numpy_view's
_POOL = numba.config.NUMBA_NUM_THREADS if numba is not None else 1


def available() -> bool:
    """Whether the fused kernels may run in this process: codec/selfcheck.enable() (which
    stream.load_model calls) found numba there, LLMZIP_FUSED not 0 and every kernel equal to
    its torch reference. (Called a few hundred times per step: it reads no environment variable.)"""
    return not STATE["off"] and STATE.get("ok") is True



@contextmanager
def disabled():
    """Inside: the torch reference everywhere (the self-check's references, tests)."""
    STATE["off"] += 1
    try:
        yield
    finally:
        STATE["off"] -= 1



def usable(t: torch.Tensor) -> bool:
    """Whether to take the fused path for tensors like t (on the CPU, kernels available)."""
    return t.is_cpu and available()



def threads_for(items: int) -> int:
    """Chunks to split a kernel's ``items`` outer iterations into: one per thread (torch's
    thread count, which kernels.configure sets, within numba's pool)."""
    return max(1, min(torch.get_num_threads(), _POOL, items))



def scratch_buffer(key: tuple, shape: tuple, dtype: torch.dtype) -> tuple[torch.Tensor, np.ndarray]:
    """A buffer of this thread for one call site (``key``), reused while its shape stays, and
    its numpy view."""
    pool = _LOCAL.__dict__.setdefault("pool", {})
    t = pool.get(key)
    if t is None or t[0].shape != shape:
        with torch.inference_mode(False):  # a normal tensor: usable in and out of that mode
            buf = torch.empty(shape, dtype=dtype)
        t = pool[key] = (buf, buf.numpy())
    return t



def numpy_view(t: torch.Tensor) -> np.ndarray:
    """The numpy view of a CPU tensor that lives as long as the model (a weight's scale, bias or
    gain, the attention table), made once: never for a per-step or per-cache tensor (the
    table of views would keep it alive)."""
    v = _VIEWS.get(id(t))
    if v is None or v[0] is not t:
        v = _VIEWS[id(t)] = (t, t.numpy())
    return v[1]



def contraction_free(size: int = 4096, seed: int = 0) -> bool:
    """Whether the kernels' ``a * b + c`` is two roundings, as numpy's separate operations
    are (a fused multiply-add would differ on most of these random values)."""
    rng = np.random.default_rng(seed)
    a, b, c = (rng.standard_normal(size).astype(np.float32) for _ in range(3))
    out = np.empty(size, np.float32)
    _fma_probe(a, b, c, out)
    ref = a * b
    ref += c
    return bool(np.array_equal(out.view(np.int32), ref.view(np.int32)))
