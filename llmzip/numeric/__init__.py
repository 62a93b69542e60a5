"""Exact arithmetic every layer above relies on: exp and its tables (exactmath.py), the exact
matrix products and the choice among them (products.py, intmm.py), numba intrinsics
(pairdot.py), the linear layer's quantiser (linear.py) and the shared numba set-up (jit.py)."""
