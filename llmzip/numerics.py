"""The numeric environment: dtype, device, threads, and a fingerprint of what the floating-point
results depend on.

In the portable mode (dtype "portable", exactllama.py) none of this matters: the logits are
integers' exact functions, the same everywhere; the thread count and device are the
decoder's own choice. In the default (fast) mode the probabilities are exactly reproducible
only where the same kernels run: same torch version, device kind, CPU instruction set
(measured: logits differ by ~4e-5 between AVX-512 and AVX2 kernels) and thread count
(measured: float32 GEMM and attention results change between 1 and 2 threads). The thread
count is stored in the header and the decoder uses it whatever its own core count. The header
stores
:meth:`Numerics.env_fingerprint`; the decoder refuses a file from another environment unless
told to try anyway.
"""

from __future__ import annotations

import os
import zlib

import torch

from llmzip.errors import LlmzipError
from llmzip.model import LoadedModel, load

MAX_AUTO_THREADS = 16  # beyond this a 135M model's step gains nothing
# name -> (weights and activations, KV cache and attention)
_TORCH_DTYPES = {
    "float32": (torch.float32, torch.float32),
    "bfloat16": (torch.bfloat16, torch.bfloat16),
    "float16": (torch.float16, torch.float16),
    "mixed": (torch.float32, torch.bfloat16),
    "portable": (torch.float64, torch.float64),  # exactllama.py: integers, exact everywhere
}


def cpu_capability() -> str:
    """The instruction set torch's CPU kernels dispatch to (e.g. AVX2, AVX512)."""
    try:
        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # pragma: no cover - very old torch
        return "unknown"


def auto_dtype(device: str) -> str:
    """bfloat16 where the hardware runs it natively; elsewhere "mixed": float32 matmuls with a
    bfloat16 KV cache (measured on an AVX2-only CPU: bfloat16 matmuls are ~4x slower than
    float32, but bfloat16 attention ~1.5x faster than float32)."""
    if device == "cuda":
        return "bfloat16"
    return "bfloat16" if cpu_capability() in ("AVX512_BF16", "AMX", "AVX512_AMX") else "mixed"


class Numerics:
    """Applies and describes the numeric settings of a run."""

    def __init__(self, dtype: str = "auto", device: str = "cpu", threads: int | None = None):
        if device not in ("cpu", "cuda"):
            raise LlmzipError(f"unknown device {device!r} (use cpu or cuda)")
        if device == "cuda" and not torch.cuda.is_available():
            raise LlmzipError("--device cuda was asked for, but torch sees no CUDA GPU")
        self.device_kind = device
        self.dtype_name = auto_dtype(device) if dtype == "auto" else dtype
        if self.dtype_name not in _TORCH_DTYPES:
            raise LlmzipError(
                f"unknown dtype {dtype!r} (use auto, float32, bfloat16, float16, mixed, "
                "portable)")
        self.dtype, self.kv_dtype = _TORCH_DTYPES[self.dtype_name]
        if threads is None:
            threads = max(1, min(len(os.sched_getaffinity(0)), MAX_AUTO_THREADS))
        if not 1 <= threads <= 255:
            raise LlmzipError("threads must be in 1..255")
        self.threads = threads
        torch.set_num_threads(threads)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
        torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False

    @property
    def portable(self) -> bool:
        """Results independent of machine, device and threads (exactllama.py)."""
        return self.dtype_name == "portable"

    def describe(self) -> str:
        """What the floating-point results depend on, as text."""
        if self.portable:
            return "portable"
        parts = [f"torch {torch.__version__}", self.device_kind, self.dtype_name,
                 f"{self.threads} threads"]
        if self.device_kind == "cuda":
            parts += [torch.cuda.get_device_name(), f"cuda {torch.version.cuda}"]
        else:
            parts.append(cpu_capability())
        return "; ".join(parts)

    def env_fingerprint(self) -> bytes:
        return zlib.crc32(self.describe().encode()).to_bytes(4, "little")

    def load_model(self, spec: str | None) -> LoadedModel:
        return load(spec, dtype=self.dtype, device=self.device_kind, kv_dtype=self.kv_dtype,
                    portable=self.portable)


def numerics_for(settings) -> Numerics:
    return Numerics(settings.dtype, settings.device, settings.threads)
