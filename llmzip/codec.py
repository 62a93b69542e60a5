"""compress / decompress: bytes -> frames -> streams -> predictor + range coder -> container.

The heart is :func:`_run_frame`, the one loop that the encoder and the decoder share: they differ
only in the callback that turns a step's probabilities into tokens (encode the known tokens, or
decode them). Everything the decoder needs to repeat the computation is in the header and in
each frame's stream table.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from llmzip import container as fmt
from llmzip.coder import Decoder, Encoder
from llmzip.errors import ChecksumError, FormatError, MismatchError, ModelError
from llmzip.exactllama import MAX_WINDOW as EXACT_MAX_WINDOW
from llmzip.llama import longest_window
from llmzip.mixer import MixConfig, UnknownSettings
from llmzip.numerics import Numerics, numerics_for
from llmzip.predictor import Predictor, stream_starts

DEFAULT_WINDOW = 512  # tokens of context per stream (see benchmarks/RESULTS.md)
BEST_WINDOW = 4096  # --best: the longest window the default model takes (llama.longest_window)
DEFAULT_SINKS = 4  # first tokens of a stream kept in the window for good (attention sinks)
DEFAULT_FRAME_SIZE = 1 << 20  # bytes of input per frame: bounds memory, sets the most streams
MIN_SEGMENT_TOKENS = 1024  # auto streams: segments at least this long
DEFAULT_PRIME = 128  # steps stream 0 runs alone to give the other streams a context (RESULTS.md)
MAX_AUTO_STREAMS = 64  # auto streams: more gives little speed on CPU and costs KV memory
BINARY_TOKENS_PER_BYTE = 0.75  # above this a frame is not text: store it without the model

Progress = Callable[[int], None]  # called with a number of input bytes just finished


@dataclass(frozen=True)
class Settings:
    """Compression settings. Those the decoder must reproduce go into the header."""

    model: str | None = None  # path; None: $LLMZIP_MODEL or the installed default
    streams: int | None = None  # None: automatic (segments of >= MIN_SEGMENT_TOKENS)
    window: int = DEFAULT_WINDOW
    sinks: int = DEFAULT_SINKS
    prime: int = DEFAULT_PRIME  # 0: every stream starts cold (predictor.py)
    dtype: str = "auto"  # "portable": exact everywhere (exactllama.py), else machine-bound
    device: str = "cpu"
    threads: int | None = None
    frame_size: int = DEFAULT_FRAME_SIZE
    mix: MixConfig = field(default_factory=MixConfig)

    def __post_init__(self) -> None:
        if self.streams is not None and not 1 <= self.streams <= fmt.MAX_STREAMS:
            raise ValueError(f"streams must be in 1..{fmt.MAX_STREAMS}")
        if not 0 <= self.sinks < self.window <= fmt.MAX_WINDOW or self.window < 8:
            raise ValueError(f"window must be in 8..{fmt.MAX_WINDOW} and larger than sinks")
        if not 0 <= self.prime <= fmt.MAX_WINDOW:
            raise ValueError(f"prime must be in 0..{fmt.MAX_WINDOW}")
        if not 1 <= self.frame_size <= fmt.MAX_FRAME_SIZE:
            raise ValueError(f"frame size must be in 1..{fmt.MAX_FRAME_SIZE}")
        if self.dtype == "portable":
            if self.window > EXACT_MAX_WINDOW:
                raise ValueError(f"the portable mode takes windows up to {EXACT_MAX_WINDOW}")
            if self.mix.geometric:
                raise ValueError("the portable mode has no geometric mixture")


@dataclass
class Stats:
    """What a run did, for -v and benchmarks."""

    input_bytes: int = 0
    output_bytes: int = 0
    tokens: int = 0
    frames: int = 0
    stored_frames: int = 0
    streams: list[int] = field(default_factory=list)


def segment_lengths(n_tokens: int, streams: int | None, prime: int = 0) -> list[int]:
    """Split n tokens into contiguous segments, one per stream: non-increasing lengths, the
    first ones one longer, and with more than one stream the first ``prime`` tokens more
    (stream 0 runs alone for ``prime`` steps; predictor.py). Fewer streams when the tokens
    after the prime do not give each stream one."""
    if streams is None:
        streams = min(MAX_AUTO_STREAMS, max(1, n_tokens // MIN_SEGMENT_TOKENS))
    streams = max(1, min(streams, n_tokens - prime))
    return list(fmt.even_lengths(n_tokens, streams, prime))


def _run_frame(predictor: Predictor, lengths: list[int],
               code: Callable[[int, np.ndarray], np.ndarray],
               progress: Callable[[int], None] | None = None) -> None:
    """The shared encode/decode loop: step, code one token per active stream, observe.
    Stream 0 starts first and ends last, so the frame takes ``lengths[0]`` steps."""
    for t in range(lengths[0]):
        probs = predictor.step()
        predictor.observe(code(t, probs))
        if progress:
            progress(t + 1)


def _frame_progress(progress: Progress | None, frame_len: int, steps: int):
    if progress is None:
        return None
    done = [0]

    def report(t: int) -> None:
        now = frame_len * t // steps
        if now > done[0]:
            progress(now - done[0])
            done[0] = now

    return report


def _read_chunks(src: BinaryIO, size: int) -> Iterator[bytes]:
    while True:
        chunk = src.read(size)
        while chunk and len(chunk) < size:  # pipes return short reads
            more = src.read(size - len(chunk))
            if not more:
                break
            chunk += more
        if not chunk:
            return
        yield chunk


class _FrameEncoder:
    def __init__(self, settings: Settings, numerics: Numerics) -> None:
        self.settings = settings
        self.numerics = numerics
        self.model = numerics.load_model(settings.model)
        longest = longest_window(self.model.llama.config)
        if longest is not None and settings.window > longest:
            raise ModelError(f"a {settings.window}-token window is too long for this model: it "
                             f"takes at most {longest} (use --context {longest})")

    def header(self) -> fmt.Header:
        s = self.settings
        section = fmt.ModelSection(
            self.model.fingerprint, self.numerics.dtype_name, self.numerics.device_kind,
            self.numerics.threads, self.numerics.env_fingerprint(), s.window, s.sinks,
            s.mix.to_bytes(), s.prime,
        )
        return fmt.Header(s.frame_size, section, portable=self.numerics.portable)

    def encode(self, data: bytes, stats: Stats, progress: Progress | None) -> fmt.Frame:
        crc = zlib.crc32(data)
        stored = fmt.StoredFrame(data, crc)
        tokens = self.model.tokens.encode(data)
        if len(tokens) == 0 or len(tokens) > BINARY_TOKENS_PER_BYTE * len(data):
            if progress:
                progress(len(data))
            return stored
        s = self.settings
        lengths = segment_lengths(len(tokens), s.streams, s.prime)
        starts = stream_starts(lengths, s.prime)
        table = np.zeros((len(lengths), lengths[0]), dtype=np.int64)  # [streams, steps]
        at = 0
        for i, n in enumerate(lengths):
            table[i, starts[i] : starts[i] + n] = tokens[at : at + n]
            at += n
        encoder = Encoder()

        def code(t: int, probs: np.ndarray) -> np.ndarray:
            symbols = table[: probs.shape[0], t]
            encoder.encode(symbols, probs)
            return symbols

        predictor = Predictor(self.model, lengths, s.window, s.sinks, s.mix, s.prime)
        _run_frame(predictor, lengths, code, _frame_progress(progress, len(data), lengths[0]))
        frame = fmt.CodedFrame(len(data), crc, tuple(lengths), encoder.finish())
        if len(fmt.frame_bytes(frame, s.prime)) >= len(fmt.frame_bytes(stored)):
            return stored
        stats.tokens += len(tokens)
        stats.streams.append(len(lengths))
        return frame


def compress_stream(src: BinaryIO, dst: BinaryIO, settings: Settings | None = None,
                    progress: Progress | None = None) -> Stats:
    """Compress everything readable from ``src`` into ``dst``; memory is bounded by the frame
    size, not the input size."""
    settings = settings or Settings()
    numerics = numerics_for(settings)
    enc = _FrameEncoder(settings, numerics)
    stats = Stats()
    header = enc.header().to_bytes()
    dst.write(header)
    stats.output_bytes += len(header)
    total_crc = 0
    for chunk in _read_chunks(src, settings.frame_size):
        frame = enc.encode(chunk, stats, progress)
        out = fmt.frame_bytes(frame, settings.prime)
        dst.write(out)
        dst.flush()  # a pipe's reader gets each frame as soon as it is done
        stats.input_bytes += len(chunk)
        stats.output_bytes += len(out)
        stats.frames += 1
        stats.stored_frames += isinstance(frame, fmt.StoredFrame)
        total_crc = zlib.crc32(chunk, total_crc)
    end = fmt.frame_bytes(fmt.End(stats.input_bytes, total_crc))
    dst.write(end)
    stats.output_bytes += len(end)
    return stats


class _FrameDecoder:
    """Decodes coded frames; loads the model on the first one (stored-only files need none)."""

    def __init__(self, header: fmt.Header, model: str | None, check_env: bool,
                 threads: int | None = None, device: str | None = None) -> None:
        self.header = header
        self.model_spec = model
        self.check_env = check_env
        self.threads = threads
        self.device = device
        self._model = None
        self._mix: MixConfig | None = None
        self.foreign_env: str | None = None  # set when --ignore-env let a mismatch through

    def failure(self, index: int, message: str) -> str:
        """The message for a coded frame whose content did not verify: a file made in another
        numeric environment and decoded with --ignore-env is not corrupt, it needs its own
        machine."""
        if self.foreign_env is None:
            return message
        return (f"frame {index} did not decode: this machine ({self.foreign_env}) computes "
                "other probabilities than the one that made the file; decode it there (files "
                "made with --portable decode anywhere)")

    def _load(self):
        if self._model is None:
            section = self.header.model
            assert section is not None
            try:
                self._mix = MixConfig.from_bytes(section.mix)
            except UnknownSettings as e:
                raise FormatError(f"made by a newer llmzip, or corrupt: {e}; try upgrading "
                                  "llmzip") from None
            except ValueError as e:
                raise FormatError(f"corrupt file: bad mixer settings ({e})") from None
            if self.header.portable and section.window > EXACT_MAX_WINDOW:
                raise FormatError("corrupt file: window too large for the portable mode")
            if self.header.portable:  # any device, any thread count: the decoder's choice
                numerics = Numerics(section.dtype, self.device or "cpu", self.threads)
            else:
                numerics = Numerics(section.dtype, section.device, section.threads)
            foreign = not numerics.portable and numerics.env_fingerprint() != section.env
            if foreign and not self.check_env:
                self.foreign_env = numerics.describe()
            elif foreign:
                raise MismatchError(
                    "this file was made in a different numeric environment (torch version, "
                    f"device or CPU instruction set; here: {numerics.describe()}) and may not "
                    "decode here; pass --ignore-env to try anyway (the checksum still guards "
                    "the result)"
                )
            model = numerics.load_model(self.model_spec)
            if model.fingerprint != section.fingerprint:
                raise MismatchError(
                    f"this file was made with another model (fingerprint "
                    f"{section.fingerprint.hex()}, the model at hand is "
                    f"{model.fingerprint.hex()}); pass the right one with --model"
                )
            self._model = model
        return self._model

    def decode(self, frame: fmt.CodedFrame, index: int, progress: Progress | None) -> bytes:
        # The encoder stores any frame denser than this, so no file of ours exceeds it; the
        # range decoder never runs out of input, so this bounds the work a forged count costs.
        if sum(frame.tokens) > BINARY_TOKENS_PER_BYTE * frame.length:
            raise FormatError(f"corrupt file: frame {index}: more tokens than its length allows")
        model = self._load()
        section = self.header.model
        assert section is not None and self._mix is not None
        lengths = list(frame.tokens)
        try:
            starts = stream_starts(lengths, section.prime)
        except ValueError:
            raise FormatError(f"corrupt file: frame {index}: stream token counts do not fit "
                              "the header") from None
        table = np.zeros((len(lengths), lengths[0]), dtype=np.int64)  # [streams, steps]
        try:
            decoder = Decoder(frame.payload)
        except ValueError as e:
            raise FormatError(f"corrupt file: frame {index}: {e}") from None

        def code(t: int, probs: np.ndarray) -> np.ndarray:
            try:
                symbols = decoder.decode(probs)
            except ValueError:
                raise ChecksumError(f"corrupt data in frame {index}") from None
            table[: probs.shape[0], t] = symbols
            return symbols

        predictor = Predictor(model, lengths, section.window, section.sinks, self._mix,
                              section.prime)
        _run_frame(predictor, lengths, code, _frame_progress(progress, frame.length, lengths[0]))
        tokens = np.concatenate([table[i, a : a + n] for i, (a, n) in enumerate(zip(starts,
                                                                                  lengths))])
        try:
            data = model.tokens.decode(tokens)
        except ValueError:
            raise ChecksumError(f"corrupt data in frame {index} (undecodable tokens)") from None
        return data


def _verify(data: bytes, length: int, crc: int, index: int) -> None:
    if len(data) != length or zlib.crc32(data) != crc:
        raise ChecksumError(f"checksum mismatch in frame {index}: the file is corrupt")


def decompress_stream(src: BinaryIO, dst: BinaryIO, model: str | None = None,
                      check_env: bool = True, progress: Progress | None = None,
                      threads: int | None = None, device: str | None = None) -> Stats:
    """Decompress a whole container from ``src`` to ``dst``, verifying every checksum. Writes
    each frame only after its checksum matched; memory is bounded by the frame size.
    ``threads`` and ``device`` apply to portable files; a machine-bound file decodes with the
    settings it was made with."""
    header = fmt.Header.read(src)
    decoder = _FrameDecoder(header, model, check_env, threads, device)
    stats = Stats()
    total_crc = 0
    index = 0
    while True:
        frame = fmt.read_frame(src, header)
        if isinstance(frame, fmt.End):
            break
        index += 1
        if isinstance(frame, fmt.StoredFrame):
            data = frame.data
            _verify(data, len(data), frame.crc, index)
            stats.stored_frames += 1
            if progress:
                progress(len(data))
        else:
            try:
                data = decoder.decode(frame, index, progress)
                _verify(data, frame.length, frame.crc, index)
            except ChecksumError as e:
                raise ChecksumError(decoder.failure(index, str(e))) from None
            stats.tokens += sum(frame.tokens)
            stats.streams.append(len(frame.tokens))
        dst.write(data)
        dst.flush()
        stats.input_bytes += len(data)
        stats.frames += 1
        total_crc = zlib.crc32(data, total_crc)
    if frame.length != stats.input_bytes or frame.crc != total_crc:
        raise ChecksumError("checksum mismatch of the whole file: the file is corrupt")
    if src.read(1):
        raise FormatError("corrupt file: trailing data after the end record")
    return stats


def compress(data: bytes, **settings) -> bytes:
    """Compress bytes. Keyword arguments are :class:`Settings` fields."""
    out = io.BytesIO()
    compress_stream(io.BytesIO(data), out, Settings(**settings))
    return out.getvalue()


def decompress(blob: bytes, model: str | None = None, check_env: bool = True,
               threads: int | None = None, device: str | None = None) -> bytes:
    """Decompress bytes made by :func:`compress`; raises an LlmzipError on any problem."""
    out = io.BytesIO()
    decompress_stream(io.BytesIO(blob), out, model=model, check_env=check_env,
                      threads=threads, device=device)
    return out.getvalue()
