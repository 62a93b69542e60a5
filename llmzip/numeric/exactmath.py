"""Arithmetic whose results are the same on every machine (the portable mode's building blocks).

Every function here is built from operations that IEEE 754 rounds exactly and that no kernel
may reorder: element-wise ``+ - * /`` and ``sqrt`` on float64 tensors (separate eager torch
ops, so nothing is fused into an FMA), rounding, max, exponent extraction, and sums of integers.

The key fact: a float64 matrix product of integer-valued matrices is exact, in any summation
order, with or without FMA, on any BLAS, CPU or GPU, as long as every partial sum stays below
2**53. :func:`quantize_rows` makes integers with power-of-two scales (so scaling is exact too),
and the callers choose the bit widths so that the bound holds for their inner dimension (a
static check, :func:`check_exact`).

Transcendentals never come from the platform's libm: :func:`exp` is a fixed polynomial, and
the rotary tables come from Python's ``decimal`` (software arithmetic at 40 digits, rounded
once to float64).
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from functools import cache, lru_cache

import numpy as np
import torch

F64 = torch.float64
_LN2_HI = 6.93147180369123816490e-01  # low 32 bits zero: n * _LN2_HI is exact for |n| < 2**20
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_EXP_COEFFS = [1.0 / math.factorial(k) for k in range(14)]  # Taylor; |r| <= ln2/2
EXP_MIN, EXP_MAX = -700.0, 700.0


def check_exact(a_bits: int, b_bits: int, inner: int) -> None:
    """Raise unless products of |a| <= 2**a_bits and |b| <= 2**b_bits summed over ``inner``
    terms stay below 2**53 (then a float64 matmul of them is exact)."""
    if (2 ** (a_bits + b_bits)) * inner >= 2**53:
        raise ValueError(f"{a_bits}+{b_bits} bits over {inner} terms can round in float64")


def pow2(e: torch.Tensor) -> torch.Tensor:
    """2.0**e exactly (float64), for integer e in [-1022, 1023], built from the bit pattern."""
    e = e.to(torch.int64).clamp(-1022, 1023)
    return ((e + 1023) << 52).view(F64)


def quantize_rows(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (float64, [..., K]) -> (q, scale): q integer-valued float64 with |q| <= 2**bits, scale
    [..., 1] a power of two, x ~= q * scale. Row-wise, exact up to the one rounding of q, for
    rows whose largest |x| is 0 or at least 2**(bits - 1023) (pow2's range; below it the
    result is still the same on every machine, but q may not carry the row)."""
    top = x.abs().amax(dim=-1, keepdim=True)
    e = torch.frexp(top).exponent.to(torch.int64)  # top < 2**e
    q = torch.round(x * pow2(bits - e))
    return q, pow2(e - bits)


def exp(x: torch.Tensor) -> torch.Tensor:
    """e**x (float64) by range reduction and a fixed polynomial; x is clamped to [-700, 700].
    Relative error ~1e-15; what matters is that the result is the same everywhere."""
    x = x.clamp(EXP_MIN, EXP_MAX)
    n = torch.round(x * _INV_LN2)
    r = x - n * _LN2_HI
    r = r - n * _LN2_LO
    p = torch.full_like(r, _EXP_COEFFS[-1])
    for c in reversed(_EXP_COEFFS[:-1]):
        p = p * r
        p = p + c
    return p * pow2(n)


def silu(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(x) = x / (1 + e**-x)."""
    return x / (exp(-x) + 1.0)


def integer_sum(q: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """Sum of integer-valued float64 values as int64 (exact in any order)."""
    return q.to(torch.int64).sum(dim=dim, keepdim=keepdim)


@cache
def _inv_freq_decimal(theta: float, head_dim: int) -> tuple[Decimal, ...]:
    with localcontext() as ctx:
        ctx.prec = 40
        base = Decimal(theta)
        return tuple(base ** (Decimal(-2 * i) / Decimal(head_dim)) for i in range(head_dim // 2))


@cache
def _pi(prec: int) -> Decimal:
    """pi to ``prec`` digits (Machin's formula)."""
    with localcontext() as ctx:
        ctx.prec = prec + 5
        tiny = Decimal(10) ** -(prec + 5)

        def arctan_inv(n: int) -> Decimal:
            x = Decimal(1) / n
            total, term, k, sign = Decimal(0), x, 1, 1
            while term > tiny:
                total += sign * term / k
                term = term / (n * n)
                k += 2
                sign = -sign
            return total

        pi = 4 * (4 * arctan_inv(5) - arctan_inv(239))
        ctx.prec = prec
        return +pi


_TAYLOR_END = Decimal("1E-45")  # (exact: a power of ten)


def _cos_sin(a: Decimal, pi: Decimal) -> tuple[Decimal, Decimal]:
    """cos and sin of a by Taylor series after reduction to [-pi, pi]."""
    two_pi = 2 * pi
    a = a - two_pi * (a / two_pi).to_integral_value()
    c, s, term, k = Decimal(0), Decimal(0), Decimal(1), 0
    while True:
        if k % 4 == 0:
            c += term
        elif k % 4 == 1:
            s += term
        elif k % 4 == 2:
            c -= term
        else:
            s -= term
        k += 1
        term = term * a / k
        if abs(term) < _TAYLOR_END:
            return c, s


@lru_cache(maxsize=8192)
def rotary(position: int, theta: float, head_dim: int) -> tuple[tuple[float, ...], ...]:
    """(cos, sin) of ``position * theta**(-2i/D)`` for i < D/2, as float64, the same on every
    machine (decimal arithmetic, one rounding to float64 at the end)."""
    with localcontext() as ctx:
        ctx.prec = 50
        pi = _pi(ctx.prec)
        cos, sin = [], []
        for f in _inv_freq_decimal(theta, head_dim):
            c, s = _cos_sin(position * f, pi)
            cos.append(float(c))
            sin.append(float(s))
    return tuple(cos), tuple(sin)


# ------------------------------------------------------------------ float32 / table helpers


def pow2_32(e: torch.Tensor) -> torch.Tensor:
    """2.0**e exactly (float32), for integer e in [-126, 127], built from the bit pattern."""
    e = e.to(torch.int32).clamp(-126, 127)
    return ((e + 127) << 23).view(torch.float32)


_EXP32_COEFFS = [1.0 / math.factorial(k) for k in range(8)]  # |r| <= ln2/2: error < 2e-8


def exp32(x: torch.Tensor) -> torch.Tensor:
    """e**x (float32) by range reduction and a fixed polynomial, x clamped to [-87, 88]: one
    fixed sequence of correctly rounded float32 operations, so the same bits everywhere."""
    x = x.clamp(-87.0, 88.0)
    n = torch.round(x * 1.4426950408889634)
    r = x - n * 0.693145751953125  # ln2 high part: 15 significant bits, n * it is exact
    r = r - n * 1.4286068203094172e-06
    p = torch.full_like(r, _EXP32_COEFFS[-1])
    for c in reversed(_EXP32_COEFFS[:-1]):
        p = p * r
        p = p + c
    return p * pow2_32(n)


@cache
def exp_table(step_bits: int, value_bits: int, floor: int, size: int) -> torch.Tensor:
    """int64 [size]: ``max(floor, round(2**value_bits * exp(-i / 2**step_bits)))``, computed with
    :func:`exp` (float64, the same everywhere). A lookup replaces ``exp`` on large tensors."""
    i = torch.arange(size, dtype=F64)
    e = exp(-i / float(1 << step_bits))
    return torch.round(e * float(1 << value_bits)).clamp_(min=floor).to(torch.int64)


def sqrt(x: torch.Tensor) -> torch.Tensor:
    """The correctly rounded (IEEE 754) square root, element by element. ``torch.sqrt`` is not
    one on the CPU: torch 2.13's CPU kernel is one ulp off on ~0.8% of float32 and float64
    inputs (measured on AVX-512 and with ATEN_CPU_CAPABILITY=avx2 or default), while CUDA's
    sqrt is correctly rounded. numpy's is the hardware instruction, correctly rounded."""
    if x.is_cuda:
        return torch.sqrt(x)
    return torch.from_numpy(np.sqrt(x.cpu().numpy())).to(x.device)
