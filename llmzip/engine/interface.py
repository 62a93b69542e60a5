"""What an engine is to the model: the arithmetic of one step, behind one interface.

:class:`engine.llama.Llama` owns the layer loop and the ring layout of the KV cache and calls
only these methods; :class:`engine.exact.Engine` (format 3: every number exact) and
:class:`engine.legacy.engine.LegacyEngine` (the arithmetic of ``--portable`` files of formats
1 and 2) implement them. An engine may add :meth:`StepEngine.attention_steps` (several steps
whose tokens are known, as the encoder has them): :attr:`runs_ahead` says whether it has it.

Invariant: for the same weights and the same sequence of calls (batch sizes included), an
engine returns the same bits on every machine, row by row.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from llmzip.engine.llama import LlamaConfig


class KVCacheLike(Protocol):
    """The per-stream state an engine keeps between steps (keys, values, positions)."""

    t: int  # the next token's position in every stream
    window: int
    sinks: int
    offset: int  # the sinks' first position

    @property
    def batch(self) -> int: ...

    def shrink(self, n: int) -> None:
        """Keep the first n streams."""

    def grow(self, n: int) -> None:
        """Copy stream 0 into streams up to n (the primed streams' start)."""


class StepEngine(Protocol):
    """The arithmetic of one step of a Llama-family model (engine.llama.Llama's calls)."""

    runs_ahead: bool  # whether attention_steps exists (several known steps at once)

    def build(self, config: LlamaConfig, tensors: dict[str, torch.Tensor]
              ) -> tuple[Any, list[tuple], tuple]:
        """The weights in this engine's form: (embedding, per-layer (norm1, qkv, o, norm2,
        gate_up, down), (final norm, head))."""

    def new_cache(self, config: LlamaConfig, batch: int, window: int, sinks: int,
                  *args: Any) -> KVCacheLike:
        """An empty cache of ``batch`` streams and ``window`` slots (``sinks`` of them kept)."""

    def begin(self, cache: KVCacheLike) -> tuple:
        """Prepare the step at ``cache.t`` (rotary, slot, valid slots); its result goes to
        :meth:`attention`."""

    def embed(self, table: Any, tokens: torch.Tensor) -> torch.Tensor:
        """Embedding rows [n, C] float32 of tokens [n]."""

    def normed_linear(self, x: torch.Tensor, lin: Any, gain: Any) -> torch.Tensor:
        """``lin(rmsnorm(x) * gain)``: [n, C] -> [n, N]."""

    def linear(self, x: torch.Tensor, lin: Any) -> torch.Tensor:
        """``lin(x)``: [n, K] -> [n, N]."""

    def silu(self, x: torch.Tensor) -> torch.Tensor:
        """SiLU, element-wise."""

    def attention(self, cache: KVCacheLike, i: int, pos: tuple, qkv: torch.Tensor
                  ) -> torch.Tensor:
        """Layer i: this step's keys and values into the cache, then the attention output
        [B, H D] of the queries in qkv [B, (H + 2G) D]."""
