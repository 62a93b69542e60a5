"""Command-line options shared by `compress` and `bench`, and the Settings built from them.
Torch-free: only codec/settings.py, format/ and click."""

from __future__ import annotations

from collections.abc import Callable

import click

from llmzip.codec import settings as st
from llmzip.format import container as fmt
from llmzip.format.layout import MAX_AUTO_STREAMS

model_option = click.option(
    "--model", metavar="NAME|PATH", envvar="LLMZIP_MODEL",
    help="A model name (`llmzip model list`), a .gguf file or a Hugging Face model directory "
    "[default: $LLMZIP_MODEL, then smollm2-135m].")

device_options = [
    click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu",
                 show_default=True,
                 help="Where to compute; the output is the same bytes on any device."),
    click.option("--threads", type=click.IntRange(1, 255),
                 help="CPU threads [default: cores; per worker: cores / workers]; the output "
                 "is the same for any count."),
    click.option("--workers", type=click.IntRange(1, 1024),
                 help="Code frames in N processes, each with its own model (memory: N "
                 "models); the output is the same bytes. With --cluster: N Ray actors."),
    click.option("--cluster", metavar="ADDRESS", envvar="LLMZIP_CLUSTER",
                 help="Code frames on a Ray cluster: 'auto', 'ray://HOST:PORT' or 'local' "
                 "(needs llmzip[cluster]); the output is the same bytes."),
]

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _size(ctx, param, value: str | None) -> int | None:
    """SIZE: bytes, or with a K, M or G suffix (KiB, MiB, GiB; 'iB' and 'B' may follow)."""
    if value is None:
        return None
    text = value.strip().lower().removesuffix("ib").removesuffix("b")
    unit = text[-1:] if text[-1:] in _UNITS and not text[-1:].isdigit() else ""
    number = text[: len(text) - len(unit)]
    if not number.isdigit() or int(number) == 0:
        raise click.BadParameter(f"{value!r} is not a size such as 4096, 64K, 10M or 1G")
    return int(number) * _UNITS[unit]


max_size_option = click.option(
    "--max-size", metavar="SIZE", callback=_size,
    help="Refuse a frame that declares more than SIZE bytes (like xz's --memlimit; K, M, G "
    "suffixes) [default: the format's largest, 256M].")

# zstd's and gzip's ladder: -1 (--fast) .. -9 (--best), settings.LEVELS; -2 .. -8 are listed in
# -1's help only. A given --streams or --context still wins.
_LEVEL_FLAGS = [
    (n, ("--fast",) if n == 1 else ("--best",) if n == st.BEST_LEVEL else (),
     f"Level 1 of 1..{st.BEST_LEVEL}, the fastest: a {st.LEVELS[1].window}-token window, a "
     f"stream per {st.LEVELS[1].segment} tokens (-2 .. -{st.BEST_LEVEL - 1} in between, "
     f"{st.DEFAULT_LEVEL} the default: README \"Levels\")." if n == 1 else
     f"Level {n}: the best ratio, slowest: one stream per frame, a "
     f"{st.LEVELS[n].window}-token window." if n == st.BEST_LEVEL else None)
    for n in sorted(st.LEVELS)
]

_SETTINGS_OPTIONS = [
    model_option,
    *(click.option(f"-{n}", *names, "level", flag_value=n, help=text, hidden=text is None)
      for n, names, text in _LEVEL_FLAGS),
    click.option("--streams", type=click.IntRange(1, fmt.MAX_STREAMS),
                 help="Streams coded in lockstep per frame [default: by level and input "
                 "size, README \"Levels\"; at most "
                 f"{MAX_AUTO_STREAMS}]."),
    click.option("--context", "window", type=click.IntRange(8, fmt.MAX_WINDOW),
                 help="Context window (tokens), at most half the model's trained positions "
                 "[default: by level and input size, README \"Levels\"]."),
    click.option("--prime", type=click.IntRange(0, fmt.MAX_PRIME),
                 default=st.DEFAULT_PRIME, show_default=True,
                 help="Tokens the first stream codes alone before the others start from its "
                 "context (0: every stream starts cold)."),
    click.option("--portable", is_flag=True, hidden=True,
                 help="Accepted for llmzip 0.1's habits: every file is portable now."),
    *device_options,
    click.option("--frame-size", type=click.IntRange(1, fmt.MAX_FRAME_SIZE),
                 default=st.DEFAULT_FRAME_SIZE, show_default=True,
                 help="Bytes of input per frame (bounds memory)."),
    click.option("--no-ngram", is_flag=True, help="Switch off the n-gram model."),
    click.option("--no-match", is_flag=True, help="Switch off the match model."),
    click.option("--no-bias", is_flag=True, help="Switch off the online bias head."),
    click.option("--no-recall", is_flag=True,
                 help="Switch off the hidden-state recall (neural cache)."),
]


def settings_options(f: Callable) -> Callable:
    """Adds every compression-settings option; the command passes them to settings_from()."""
    for opt in reversed(_SETTINGS_OPTIONS):
        f = opt(f)
    return f


def device_options_of(f: Callable) -> Callable:
    """Adds --device, --threads, --workers and --cluster (for decompress and test)."""
    for opt in reversed(device_options):
        f = opt(f)
    return f


def settings_from(model: str | None, level: int | None, streams: int | None,
                  window: int | None, prime: int, portable: bool, device: str, threads: int | None,
                  workers: int | None, cluster: str | None, frame_size: int, no_ngram: bool,
                  no_match: bool, no_bias: bool, no_recall: bool) -> st.Settings:
    """Settings from the options of settings_options(); a bad combination is a UsageError.
    A level (``-1`` .. ``-9``, None: the default) only chooses what --streams and --context
    leave unset, by input size (Settings.sized)."""
    switches = {"ngram": no_ngram, "match": no_match, "bias": no_bias, "recall": no_recall}
    without = frozenset(name for name, off in switches.items() if off)
    try:
        return st.Settings(model=model, level=level or st.DEFAULT_LEVEL, streams=streams,
                           window=window, prime=prime,
                           device=device, threads=threads, workers=workers, cluster=cluster,
                           frame_size=frame_size, without=without)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
