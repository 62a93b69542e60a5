"""Compression settings: their defaults, their checks, and their form in a file's header.

Torch-free on purpose: the command line, ``llmzip info`` and the container read this module
without loading a model. Every setting the decoder must reproduce travels in the header's model
section (:func:`to_section` / :func:`from_section`, one pair); the rest (device, threads, the
model's path) are this run's own choices and change nothing in the output.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, replace

from llmzip import container as fmt
from llmzip.errors import FormatError


@dataclass(frozen=True)
class Level:
    """One rung of the level ladder: the context window and the tokens per stream (None: one
    stream per frame) of a frame whose stream count is automatic."""

    window: int
    segment: int | None


# The level ladder (-1 .. -9, README "Levels", figures in benchmarks/RESULTS.md): one table.
# Decompress time goes with the steps (the weights are read once per step, so fewer streams
# cost more steps) and with the window each token attends to; compressing runs the model
# ahead over many steps (predictor.py), so fewer streams cost it much less. Ratio improves
# with the window and with fewer cold starts. Level 5 is the default, 9 is --best. Nothing
# here is stored in a file: the header holds the window, the priming and each frame's stream
# count.
LEVELS = {
    1: Level(512, 1024),
    2: Level(1024, 1024),
    3: Level(1024, 1536),
    4: Level(2048, 2560),
    5: Level(2048, 5120),
    6: Level(2048, 8192),
    7: Level(4096, 8192),
    8: Level(4096, 16384),
    9: Level(4096, None),
}
DEFAULT_LEVEL = 5
BEST_LEVEL = max(LEVELS)
SMALL_FROM_LEVEL = DEFAULT_LEVEL  # from here up, a small input gets the best level's coding
DEFAULT_WINDOW = LEVELS[DEFAULT_LEVEL].window  # tokens of context per stream (issue 22)
BEST_WINDOW = LEVELS[BEST_LEVEL].window  # the longest window the default model takes
SMALL_INPUT = 16 << 10  # bytes: an input of one frame this small fits the best level's window

DEFAULT_SINKS = 4  # first tokens of a stream kept in the window for good (attention sinks)
DEFAULT_FRAME_SIZE = 1 << 20  # bytes of input per frame: bounds memory, sets the most streams
DEFAULT_PRIME = 128  # steps stream 0 runs alone to give the other streams a context
MAX_WINDOW = 1 << 13  # the engine's exact value product holds up to this window (engine.py)

# Mixer settings version 1: the fields up to mix_lr. Version 2 (written only when recall is
# on) appends flags2 (bit 0: recall), recall_bits and recall_theta. Flag bit 4 (the geometric
# mixture of llmzip 0.1's machine-bound mode) is refused.
_MIX_V1 = "<BBBBBee"  # version, flags, ngram_order, match_min, table_bits, lrs (half)
_MIX_V2 = _MIX_V1 + "BBe"
_MIX_V6 = _MIX_V2 + "H"  # version 6: version 5's fields (flags2 bit 1: warm) and lm_scale
# Version 3 is the single byte 3: the settings of PRESET_3 (the defaults of its day, frozen
# here: changing a default later does not change what this byte means). Version 4 is the single
# byte 4: PRESET_4, today's defaults (PRESET_3 with the warm start). Version 5 is version 2's
# layout whose flags2 bit 1 is the warm start (mixer.py), written for any other settings with it.
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
    # The bias steps by AdaGrad (bias.py), not plain SGD. False in files made before it.
    bias_adaptive: bool = True
    # Hidden-state recall (recall.py): a ring of 2**recall_bits states, votes exp(theta cos).
    recall: bool = True
    recall_bits: int = 16
    recall_theta: float = 48.0
    # The gating weights start from mixer.py's trained table, not flat. False before version 4.
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
# The 1.5B model's (model.py): its bias head steps a quarter as far, the LM at temperature
# 256 / 240 = 1.067, no recall (benchmarks/RESULTS.md, "The 1.5B model's mixer").
PRESET_7 = replace(PRESET_4, bias_lr=0.125, recall=False, lm_scale=240)
_PRESETS = {b"\x03": PRESET_3, b"\x04": PRESET_4, b"\x07": PRESET_7}  # one byte each: frozen


COMPONENTS = frozenset({"ngram", "match", "bias", "recall"})  # the mixer's switchable parts


@dataclass(frozen=True)
class Settings:
    """Compression settings. Those the decoder must reproduce go into the header."""

    model: str | None = None  # name or path; None: $LLMZIP_MODEL or the installed default
    level: int = DEFAULT_LEVEL  # the ladder's rung (LEVELS) for what is left automatic
    streams: int | None = None  # None: by level and input size (:meth:`sized`), then layout.py
    window: int | None = None  # None: by level and input size (:meth:`sized`)
    sinks: int = DEFAULT_SINKS
    prime: int = DEFAULT_PRIME  # 0: every stream starts cold (predictor.py)
    device: str = "cpu"  # where this run computes; the output is the same everywhere
    threads: int | None = None  # CPU threads (per worker); the output is the same for any
    workers: int | None = None  # frames coded in parallel processes (parallel.py); same output
    cluster: str | None = None  # a Ray address ("local", "auto", "ray://..."); same output
    frame_size: int = DEFAULT_FRAME_SIZE
    mix: MixConfig | None = None  # None: the model's own (model.py), MixConfig() by default
    without: frozenset[str] = frozenset()  # mixer components switched off (--no-ngram ...)

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be in {min(LEVELS)}..{max(LEVELS)}")
        if self.streams is not None and not 1 <= self.streams <= fmt.MAX_STREAMS:
            raise ValueError(f"streams must be in 1..{fmt.MAX_STREAMS}")
        window = self.window or DEFAULT_WINDOW
        if not 0 <= self.sinks < window <= MAX_WINDOW or window < 8:
            raise ValueError(f"window must be in 8..{MAX_WINDOW} and larger than sinks")
        if not 0 <= self.prime <= fmt.MAX_WINDOW:
            raise ValueError(f"prime must be in 0..{fmt.MAX_WINDOW}")
        if not 1 <= self.frame_size <= fmt.MAX_FRAME_SIZE:
            raise ValueError(f"frame size must be in 1..{fmt.MAX_FRAME_SIZE}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {self.device!r} (use cpu or cuda)")
        if self.threads is not None and not 1 <= self.threads <= 255:
            raise ValueError("threads must be in 1..255")
        if self.workers is not None and not 1 <= self.workers <= 1024:
            raise ValueError("workers must be in 1..1024")
        if not self.without <= COMPONENTS:
            raise ValueError(f"unknown mixer components {sorted(self.without - COMPONENTS)}")

    def mixer(self, default: MixConfig) -> MixConfig:
        """The mixer settings: ``mix``, else the model's ``default``, less ``without``."""
        return replace(self.mix or default, **{name: False for name in self.without})

    @property
    def segment(self) -> int | None:
        """Tokens per stream where the stream count is automatic (layout.auto_streams);
        None: one stream per frame."""
        return LEVELS[self.level].segment

    def sized(self, size: int | None, frames: int | None, longest: int | None = None
              ) -> Settings:
        """These settings for an input of ``size`` bytes in ``frames`` frames (None: unknown,
        taken as large): the window and stream count left unset (None) are chosen by the
        level's row of :data:`LEVELS` (README "Levels", which a test holds to this table); from
        level :data:`SMALL_FROM_LEVEL` up, one frame of at most :data:`SMALL_INPUT` bytes is
        coded as the best level codes it (one stream, its whole text in the window).
        (At most 64 streams per frame: layout.py.) The result has a window (an automatic one
        at most ``longest``, the model's llama.longest_window) and, with one stream, prime 0;
        its stream count stays None where layout.py picks it per frame. Either setting given
        explicitly is kept."""
        level = LEVELS[self.level]
        small = (self.level >= SMALL_FROM_LEVEL and frames == 1 and size is not None
                 and size <= SMALL_INPUT)
        if small or level.segment is None:
            level = LEVELS[BEST_LEVEL]
        window = self.window or min(level.window, longest or MAX_WINDOW)
        streams = self.streams or (1 if level.segment is None else None)
        prime = 0 if streams == 1 else self.prime  # the same coding: one stream never waits
        return replace(self, window=window, streams=streams, prime=prime)


@dataclass(frozen=True)
class Coding:
    """What a decoder must reproduce, read back from a header: the engine, the window, the
    priming and the mixer. ``engine`` is :data:`container.ENGINE_EXACT` or
    :data:`container.ENGINE_KEYS` (format 3) or :data:`container.ENGINE_LEGACY`
    (``--portable`` files of formats 1 and 2)."""

    fingerprint: bytes
    engine: int
    window: int
    sinks: int
    prime: int
    mix: MixConfig
    split: bool = False  # tokens coded in two parts (coder.py)


def to_section(settings: Settings, fingerprint: bytes, engine: int = fmt.ENGINE_EXACT
               ) -> fmt.ModelSection:
    """The header's model section of a compression with these settings."""
    mix = settings.mixer(MixConfig())
    return fmt.ModelSection(fingerprint, engine, settings.window or DEFAULT_WINDOW,
                            settings.sinks, settings.prime, mix.to_bytes(), split=True)


def from_section(section: fmt.ModelSection) -> Coding:
    """The inverse of :func:`to_section` (and the reading of older headers); FormatError for
    anything this llmzip cannot reproduce, saying whether a newer llmzip may read it."""
    try:
        mix = MixConfig.from_bytes(section.mix)
    except UnknownSettings as e:
        raise FormatError(f"made by a newer llmzip, or corrupt: {e}; try upgrading "
                          "llmzip") from None
    except ValueError as e:
        raise FormatError(f"corrupt file: bad mixer settings ({e})") from None
    if section.window > MAX_WINDOW:
        raise FormatError("corrupt file: window too large")
    return Coding(section.fingerprint, section.engine, section.window, section.sinks,
                  section.prime, mix, section.split)
