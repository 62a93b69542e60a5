"""The mixer's settings (:class:`MixConfig`) and their wire form in a file's header (versions
1-6, and the one-byte presets). Torch-free: ``llmzip info`` reads it without a model. A preset
byte's meaning is frozen: changing a default later never changes what an old file means."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, replace

# Mixer settings version 1: the fields up to mix_lr. Version 2 (written only when recall is
# on) appends flags2 (bit 0: recall), recall_bits and recall_theta. Flag bit 4 (the geometric
# mixture of llmzip 0.1's machine-bound mode) is refused.
_MIX_V1 = "<BBBBBee"  # version, flags, ngram_order, match_min, table_bits, lrs (half)
_MIX_V2 = _MIX_V1 + "BBe"
_MIX_V6 = _MIX_V2 + "H"  # version 6: version 5's fields (flags2 bit 1: warm) and lm_scale
# Version 3 is the single byte 3: the settings of PRESET_3 (the defaults of its day, frozen
# here: changing a default later does not change what this byte means). Version 4 is the single
# byte 4: PRESET_4, today's defaults (PRESET_3 with the warm start). Version 5 is version 2's
# layout whose flags2 bit 1 is the warm start (mixing/mixer.py), written for any other
# settings with it.
# Version 6 appends lm_scale (u16), written whenever it is not 256.
_GEOMETRIC = 16


class UnknownSettings(ValueError):
    """Settings of a version or with flags this llmzip does not know: a newer llmzip made them
    (or the file is corrupt)."""


def _half(name: str, value: float) -> None:
    try:
        exact = struct.unpack("<e", struct.pack("<e", value))[0] == value
    except (OverflowError, struct.error):
        exact = False
    if not (exact and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative float16 value, got {value!r}")


@dataclass(frozen=True)
class MixConfig:
    """Which mixer components run and every parameter the decoder must reproduce."""

    ngram: bool = True
    match: bool = True
    bias: bool = True
    shared: bool = True  # statistics shared across the streams of a frame
    ngram_order: int = 4  # n-gram orders 1..ngram_order
    match_min: int = 6  # tokens hashed to find a match
    table_bits: int = 20  # log2 rows per n-gram order and of the match table
    bias_lr: float = 0.5  # float16 values, stored exactly; tuned in benchmarks/MIXING.md
    mix_lr: float = 0.25
    # The shared bias takes a step of bias_lr per token (the sum over the streams) rather
    # than per step (their mean). False in files made before this flag existed.
    bias_sum: bool = True
    # The bias steps by AdaGrad (mixing/bias.py), not plain SGD. False in files made before it.
    bias_adaptive: bool = True
    # Hidden-state recall (mixing/recall.py): a ring of 2**recall_bits states, votes exp(theta cos).
    recall: bool = True
    recall_bits: int = 16
    recall_theta: float = 48.0
    # The gating weights start from mixing/mixer.py's trained table, not flat. False before
    # version 4.
    warm: bool = True
    # The LM's logits (plus the bias) in steps of 1/lm_scale nat (mixer.lm_frequencies): a
    # temperature of 256 / lm_scale. 256 before version 6.
    lm_scale: int = 256

    def __post_init__(self) -> None:
        if not 1 <= self.ngram_order <= 8:
            raise ValueError("ngram_order must be in 1..8")
        if not 1 <= self.match_min <= 32:
            raise ValueError("match_min must be in 1..32")
        if not 10 <= self.table_bits <= 24:
            raise ValueError("table_bits must be in 10..24")
        _half("bias_lr", self.bias_lr)
        _half("mix_lr", self.mix_lr)
        _half("recall_theta", self.recall_theta)
        if not 8 <= self.recall_bits <= 24:
            raise ValueError("recall_bits must be in 8..24")
        if not 64 <= self.lm_scale <= 1024:
            raise ValueError("lm_scale must be in 64..1024")

    @classmethod
    def lm_only(cls) -> MixConfig:
        """Every component off: the LM's softmax alone."""
        return cls(ngram=False, match=False, bias=False, recall=False, warm=False)

    def describe(self) -> str:
        """One readable line, for ``llmzip info``."""
        if not (self.ngram or self.match or self.bias or self.recall):
            return "LM alone"
        parts = []
        if self.ngram:
            parts.append(f"n-gram orders 1..{self.ngram_order}")
        if self.recall:
            parts.append(f"recall of 2^{self.recall_bits} states, theta {self.recall_theta:g}")
        if self.match:
            parts.append(f"match from {self.match_min} tokens")
        if self.bias:
            rule = "AdaGrad" if self.bias_adaptive else "SGD"
            per = "token" if self.bias_sum else "step"
            parts.append(f"bias {rule} lr {self.bias_lr:g} per {per}")
        parts.append(f"linear mixing lr {self.mix_lr:g}" + (", warm start" if self.warm else ""))
        if self.lm_scale != 256:
            parts.append(f"LM temperature {256 / self.lm_scale:.4g}")
        parts.append(f"tables 2^{self.table_bits}")
        parts.append("shared by the streams" if self.shared else "per stream")
        return ", ".join(parts)

    def to_bytes(self) -> bytes:
        for data, preset in _PRESETS.items():
            if self == preset:
                return data
        flags = (self.ngram | self.match << 1 | self.bias << 2 | self.shared << 3
                 | self.bias_sum << 5 | self.bias_adaptive << 6)
        v1 = (self.ngram_order, self.match_min, self.table_bits, self.bias_lr, self.mix_lr)
        if self.lm_scale != 256:
            return struct.pack(_MIX_V6, 6, flags, *v1, self.recall | self.warm << 1,
                               self.recall_bits, self.recall_theta, self.lm_scale)
        if self.warm:
            return struct.pack(_MIX_V2, 5, flags, *v1, self.recall | 2, self.recall_bits,
                               self.recall_theta)
        if not self.recall:  # files without recall stay readable by older versions
            return struct.pack(_MIX_V1, 1, flags, *v1)
        return struct.pack(_MIX_V2, 2, flags, *v1, 1, self.recall_bits, self.recall_theta)

    @classmethod
    def from_bytes(cls, data: bytes) -> MixConfig:
        """Inverse of to_bytes; UnknownSettings for what a newer llmzip may have written,
        ValueError on anything else malformed."""
        if data in _PRESETS:
            return _PRESETS[data]
        version = data[0] if data else None
        layout = {1: _MIX_V1, 2: _MIX_V2, 5: _MIX_V2, 6: _MIX_V6}.get(version)
        if layout is None and version is not None:
            raise UnknownSettings(f"unknown mixer settings version {version}")
        if layout is None or len(data) != struct.calcsize(layout):
            raise ValueError("mixer settings have the wrong length")
        _, flags, order, match_min, bits, bias_lr, mix_lr, *v2 = struct.unpack(layout, data)
        if flags >> 7:
            raise UnknownSettings(f"unknown mixer flags {flags:#04x}")
        if flags & _GEOMETRIC:
            raise UnknownSettings("the geometric mixture of llmzip 0.1's machine-bound mode")
        flags2, recall_bits, theta, lm_scale = [*v2, 256][:4] if v2 else (0, 16, 48.0, 256)
        if flags2 >> (2 if version in (5, 6) else 1):
            raise UnknownSettings(f"unknown mixer flags2 {flags2:#04x}")
        if version == 2 and not flags2:
            raise ValueError("mixer settings version 2 without recall")
        if version == 5 and not flags2 & 2:
            raise ValueError("mixer settings version 5 without the warm start")
        if version == 6 and lm_scale == 256:
            raise ValueError("mixer settings version 6 at temperature 1")
        return cls(bool(flags & 1), bool(flags & 2), bool(flags & 4), bool(flags & 8), order,
                   match_min, bits, float(bias_lr), float(mix_lr), bool(flags & 32),
                   bool(flags & 64), bool(flags2 & 1), recall_bits, float(theta),
                   bool(flags2 & 2), lm_scale)


PRESET_3 = MixConfig(True, True, True, True, 4, 6, 20, 0.5, 0.25, True, True, True, 16, 48.0,
                     False)
PRESET_4 = MixConfig(True, True, True, True, 4, 6, 20, 0.5, 0.25, True, True, True, 16, 48.0,
                     True)
# The 1.5B model's (model/catalog.py): its bias head steps a quarter as far, the LM at temperature
# 256 / 240 = 1.067, no recall (benchmarks/RESULTS.md, "The 1.5B model's mixer").
PRESET_7 = replace(PRESET_4, bias_lr=0.125, recall=False, lm_scale=240)
_PRESETS = {b"\x03": PRESET_3, b"\x04": PRESET_4, b"\x07": PRESET_7}  # one byte each: frozen


COMPONENTS = frozenset({"ngram", "match", "bias", "recall"})  # the mixer's switchable parts
