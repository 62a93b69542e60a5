"""Compression settings: their defaults, their checks, and their form in a file's header.

Torch-free on purpose: the command line, ``llmzip info`` and the container read this module
without loading a model. Every setting the decoder must reproduce travels in the header's model
section (:func:`to_section` / :func:`from_section`, one pair); the rest (device, threads, the
model's path) are this run's own choices and change nothing in the output.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from llmzip.errors import FormatError
from llmzip.format import container as fmt
from llmzip.format.mixconfig import COMPONENTS, MixConfig, UnknownSettings


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



@dataclass(frozen=True)
class Settings:
    """Compression settings. Those the decoder must reproduce go into the header."""

    model: str | None = None  # name or path; None: $LLMZIP_MODEL or the installed default
    level: int = DEFAULT_LEVEL  # the ladder's rung (LEVELS) for what is left automatic
    streams: int | None = None  # None: by level and input size (:meth:`sized`), then layout
    window: int | None = None  # None: by level and input size (:meth:`sized`)
    sinks: int = DEFAULT_SINKS
    prime: int = DEFAULT_PRIME  # 0: every stream starts cold (predictor.py)
    device: str = "cpu"  # where this run computes; the output is the same everywhere
    threads: int | None = None  # CPU threads (per worker); the output is the same for any
    workers: int | None = None  # frames coded in parallel processes (parallel.py); same output
    cluster: str | None = None  # a Ray address ("local", "auto", "ray://..."); same output
    frame_size: int = DEFAULT_FRAME_SIZE
    mix: MixConfig | None = None  # None: the model's own (model/catalog.py), MixConfig() by default
    without: frozenset[str] = frozenset()  # mixer components switched off (--no-ngram ...)

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be in {min(LEVELS)}..{max(LEVELS)}")
        if self.streams is not None and not 1 <= self.streams <= fmt.MAX_STREAMS:
            raise ValueError(f"streams must be in 1..{fmt.MAX_STREAMS}")
        window = self.window or DEFAULT_WINDOW
        if not 0 <= self.sinks < window <= fmt.MAX_WINDOW or window < 8:
            raise ValueError(f"window must be in 8..{fmt.MAX_WINDOW} and larger than sinks")
        if not 0 <= self.prime <= fmt.MAX_PRIME:
            raise ValueError(f"prime must be in 0..{fmt.MAX_PRIME}")
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
        (At most 64 streams per frame: format/layout.py.) The result has a window (an automatic one
        at most ``longest``, the model's llama.longest_window) and, with one stream, prime 0;
        its stream count stays None where format/layout.py picks it per frame. Either setting given
        explicitly is kept."""
        level = LEVELS[self.level]
        small = (self.level >= SMALL_FROM_LEVEL and frames == 1 and size is not None
                 and size <= SMALL_INPUT)
        if small or level.segment is None:
            level = LEVELS[BEST_LEVEL]
        window = self.window or min(level.window, longest or fmt.MAX_WINDOW)
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
    split: bool = False  # tokens coded in two parts (rangecoder.py)


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
    return Coding(section.fingerprint, section.engine, section.window, section.sinks,
                  section.prime, mix, section.split)
