"""compress / decompress: bytes -> frames -> streams -> predictor + range coder -> container.

The heart is :func:`_run_frame`, the one loop that the encoder and the decoder share: they differ
only in the callback that turns a step's probabilities into tokens (encode the known tokens, or
decode them). Everything the decoder needs to repeat the computation is in the header
(settings.py's model section) and in each frame's stream table (format/layout.py).

Each frame is coded the smallest of three ways: stored, raw LZMA2 (for what the model does not
help: binary data, UTF-16, ...) or by the model; CRLF text is given to the model as LF text
(format/lineends.py). A file whose only frame is not coded by the model has no model section in its
header.
"""

from __future__ import annotations

import collections
import io
import itertools
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import BinaryIO

import numpy as np

from llmzip.codec import parallel, selfcheck
from llmzip.codec.predictor import Predictor
from llmzip.codec.rangecoder import Decoder, Encoder, most_tokens
from llmzip.codec.settings import Coding, Settings, from_section, to_section
from llmzip.engine.keyscale import exponents
from llmzip.engine.llama import longest_window
from llmzip.errors import ChecksumError, FormatError, LlmzipError, MismatchError, ModelError
from llmzip.format import container as fmt
from llmzip.format.layout import Layout
from llmzip.format.lineends import to_crlf, to_lf
from llmzip.mixing.mixer import Mixer
from llmzip.model.load import LoadedModel, load
from llmzip.numeric.products import DECODER_ROWS, ENCODER_ROWS, TIMED_ROWS, configure

BINARY_TOKENS_PER_BYTE = 0.75  # above this a frame is not text: no model run for it
TRY_LZMA = True  # try raw LZMA2 for every frame (tests that need model-coded frames turn it off)

Progress = Callable[[int], None]  # called with a number of input bytes just finished


@dataclass
class Stats:
    """What a run did, for -v and benchmarks: original and compressed sizes either way."""

    raw_bytes: int = 0
    packed_bytes: int = 0
    tokens: int = 0
    frames: int = 0
    stored_frames: int = 0  # stored or lzma: not coded by the model
    streams: list[int] = field(default_factory=list)


def _run_frame(predictor: Predictor, code: Callable[[int, np.ndarray], np.ndarray],
               progress: Callable[[int], None] | None = None) -> None:
    """The shared encode/decode loop: step, code one token per active stream, observe."""
    for t in range(predictor.layout.steps):
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


def load_model(spec: str | None, device: str, legacy: bool = False,
               rows: Sequence[int] = TIMED_ROWS) -> LoadedModel:
    """model.load (its product kernel chosen for ``rows``: ENCODER_ROWS or DECODER_ROWS),
    then, for the exact engine on the CPU, the kernels' self-check (selfcheck.enable: the
    fused kernels run only where they give the torch code's bits)."""
    model = load(spec, device, legacy=legacy, rows=rows)
    if device == "cpu" and not legacy:
        selfcheck.enable()
    return model


def mixer_class(model: LoadedModel) -> type[Mixer]:
    """The mixer of the model's format: formats 1-2 have their own arithmetic, behind one
    boundary (mixing/legacy.py)."""
    if model.legacy:
        from llmzip.mixing.legacy import LegacyMixer

        return LegacyMixer
    return Mixer


class FrameEncoder:
    """Codes frames with one model. Called with a frame's bytes (as a worker is, parallel.py):
    returns (frame, tokens coded by the model, the header's model section). ``size`` and
    ``frames`` (the whole input's) choose the settings left automatic (Settings.sized)."""

    def __init__(self, settings: Settings, size: int | None = None,
                 frames: int | None = None) -> None:
        configure(settings.device, settings.threads)
        self.model = load_model(settings.model, settings.device, rows=ENCODER_ROWS)
        longest = longest_window(self.model.llama.config)
        settings = settings.sized(size, frames, longest)
        settings = self.settings = replace(settings, mix=settings.mixer(self.model.mix),
                                           without=frozenset())
        if longest is not None and settings.window > longest:
            raise ModelError(f"a {settings.window}-token window is too long for this model: it "
                             f"takes at most {longest} (use --context {longest})")
        engine = fmt.ENGINE_KEYS if exponents(self.model) is not None else fmt.ENGINE_EXACT
        self.section = to_section(settings, self.model.fingerprint, engine)
        self.coding = from_section(self.section)  # exactly what the decoder will read

    def __call__(self, data: bytes) -> tuple[fmt.Frame, int, fmt.ModelSection]:
        return self.encode(data, None)

    def encode(self, data: bytes, progress: Progress | None
               ) -> tuple[fmt.Frame, int, fmt.ModelSection]:
        """The smallest of the stored, lzma and (for text) model-coded forms of a frame."""
        crc = zlib.crc32(data)
        choices: list[fmt.Frame] = [fmt.StoredFrame(data, crc)]
        if data and TRY_LZMA:
            choices.append(fmt.LzmaFrame(len(data), crc, fmt.lzma_pack(data)))
        text = to_lf(data)
        tokens = self.model.tokens.encode(data if text is None else text)
        if 0 < len(tokens) <= BINARY_TOKENS_PER_BYTE * len(data):
            choices.append(self._code(data, crc, tokens, text is not None, progress))
        elif progress:
            progress(len(data))
        best = min(choices, key=lambda f: len(fmt.frame_bytes(f, self.coding.prime)))
        return best, len(tokens) if isinstance(best, fmt.CodedFrame) else 0, self.section

    def _code(self, data: bytes, crc: int, tokens: np.ndarray, crlf: bool,
              progress: Progress | None) -> fmt.CodedFrame:
        layout = Layout.split(len(tokens), self.settings.streams, self.coding.prime,
                              self.settings.segment)
        table = layout.scatter(tokens)  # [streams, steps]
        encoder = Encoder(self.coding.split)

        def code(t: int, probs: np.ndarray) -> np.ndarray:
            symbols = table[: probs.shape[0], t]
            encoder.encode(symbols, probs)
            return symbols

        predictor = Predictor(self.model, layout, self.coding, ahead=table,
                              mixer=mixer_class(self.model))
        _run_frame(predictor, code, _frame_progress(progress, len(data), layout.steps))
        return fmt.CodedFrame(len(data), crc, layout.lengths, encoder.finish(), crlf)


def compress_stream(src: BinaryIO, dst: BinaryIO, settings: Settings | None = None,
                    progress: Progress | None = None) -> Stats:
    """Compress everything readable from ``src`` into ``dst``; memory is bounded by the frame
    size (a few frames are read ahead), not by the input size. With ``settings.workers`` or
    ``settings.cluster`` the frames are coded in parallel (parallel.py): the same bytes."""
    settings = settings or Settings()
    stats = Stats()
    chunks = _read_chunks(src, settings.frame_size)
    first = next(chunks, None)
    if first is None:  # empty input: no frame, no model
        _write(dst, fmt.Header(settings.frame_size, None).to_bytes(), stats)
        _write(dst, fmt.frame_bytes(fmt.End(None, None)), stats)
        return stats
    second = next(chunks, None)
    crc = [0]  # of the whole input, as it is read (frames may be coded out of order)

    def read() -> Iterator[bytes]:
        for chunk in itertools.chain([first], [] if second is None else [second], chunks):
            crc[0] = zlib.crc32(chunk, crc[0])
            yield chunk

    inputs = read()
    size, frames = (len(first), 1) if second is None else (None, None)
    pool = parallel.workers_for(FrameEncoder,
                                lambda threads: (replace(settings, threads=threads), size, frames),
                                settings.workers, settings.threads, settings.cluster,
                                settings.device)
    short = None
    try:
        if pool is None:
            encoder = FrameEncoder(settings, size, frames)
            results = (encoder.encode(chunk, progress) for chunk in inputs)
        else:
            results = pool.map(inputs)
        for n, (frame, tokens, section) in enumerate(results):
            short = (fmt.short_bytes(section, frame)
                     if second is None and isinstance(frame, fmt.CodedFrame) else None)
            if short is not None:  # the whole file, one frame in the short form
                _write(dst, short, stats)
            else:
                if n == 0:  # the model section only where a frame may need it
                    single = second is None and not isinstance(frame, fmt.CodedFrame)
                    header = fmt.Header(settings.frame_size, None if single else section)
                    _write(dst, header.to_bytes(), stats)
                _write(dst, fmt.frame_bytes(frame, section.prime), stats)
            length = len(frame.data) if isinstance(frame, fmt.StoredFrame) else frame.length
            if pool is not None and progress:
                progress(length)
            stats.raw_bytes += length
            stats.frames += 1
            stats.tokens += tokens
            if isinstance(frame, fmt.CodedFrame):
                stats.streams.append(len(frame.tokens))
            else:
                stats.stored_frames += 1
    finally:
        if pool is not None:
            pool.close()
    if short is None:
        end = fmt.End(None, None) if stats.frames <= 1 else fmt.End(stats.raw_bytes, crc[0])
        _write(dst, fmt.frame_bytes(end), stats)
    return stats


def _write(dst: BinaryIO, data: bytes, stats: Stats) -> None:
    dst.write(data)
    dst.flush()  # a pipe's reader gets each frame as soon as it is done
    stats.packed_bytes += len(data)


class FrameDecoder:
    """Decodes frames; loads the model on the first coded one (other files need none). Called
    with (index, frame) (as a worker is, parallel.py): returns the frame's verified bytes."""

    def __init__(self, header: fmt.Header, model: str | None, threads: int | None = None,
                 device: str | None = None) -> None:
        self.header = header
        self.model_spec = model
        self.threads = threads
        self.device = device or "cpu"
        self._model: LoadedModel | None = None
        self.coding: Coding | None = None

    def __call__(self, item: tuple[int, fmt.Frame]) -> bytes:
        return self.decode(item[1], item[0], None)

    def _load(self) -> LoadedModel:
        if self._model is None:
            section = self.header.model
            assert section is not None
            if section.engine == fmt.ENGINE_MACHINE_BOUND:
                raise MismatchError(
                    "this file was made by llmzip 0.1 in its machine-bound (non-portable) mode, "
                    "which only that version on the machine that made it can decode; files "
                    "made since decode anywhere")
            self.coding = from_section(section)
            configure(self.device, self.threads)
            model = load_model(self.model_spec, self.device,
                               legacy=section.engine == fmt.ENGINE_LEGACY, rows=DECODER_ROWS)
            if model.fingerprint != section.fingerprint:
                raise MismatchError(
                    f"this file was made with another model (fingerprint "
                    f"{section.fingerprint.hex()}, the model at hand is "
                    f"{model.fingerprint.hex()}); pass the right one with --model"
                )
            self._model = model
        return self._model

    def decode(self, frame: fmt.Frame, index: int, progress: Progress | None) -> bytes:
        if isinstance(frame, fmt.StoredFrame):
            data = frame.data
            if progress:
                progress(len(data))
        elif isinstance(frame, fmt.LzmaFrame):
            data = fmt.lzma_unpack(frame.payload, frame.length)
            if progress:
                progress(len(data))
        else:
            data = self._decode_coded(frame, index, progress)
            if len(data) != frame.length:
                raise ChecksumError(f"checksum mismatch in frame {index}: the file is corrupt")
        if zlib.crc32(data) != frame.crc:
            raise ChecksumError(f"checksum mismatch in frame {index}: the file is corrupt")
        return data

    def _decode_coded(self, frame: fmt.CodedFrame, index: int,
                      progress: Progress | None) -> bytes:
        # The encoder never codes a frame denser than this, so no file of ours exceeds it; the
        # range decoder never runs out of input, so this bounds the work a forged count costs.
        if sum(frame.tokens) > BINARY_TOKENS_PER_BYTE * frame.length:
            raise FormatError(f"corrupt file: frame {index}: more tokens than its length allows")
        model = self._load()
        if sum(frame.tokens) > most_tokens(len(frame.payload), model.vocab_size,
                                           self.coding.split):
            raise FormatError(f"corrupt file: frame {index}: more tokens than its compressed "
                              "data can hold")
        try:
            layout = Layout(frame.tokens, self.coding.prime)
        except ValueError:
            raise FormatError(f"corrupt file: frame {index}: stream token counts do not fit "
                              "the header") from None
        _check_window(model, self.coding.window, layout.streams, index)
        table = np.zeros((layout.streams, layout.steps), dtype=np.int64)
        try:
            decoder = Decoder(frame.payload, self.coding.split)
        except ValueError as e:
            raise FormatError(f"corrupt file: frame {index}: {e}") from None

        def code(t: int, probs: np.ndarray) -> np.ndarray:
            try:
                symbols = decoder.decode(probs)
            except ValueError:
                raise ChecksumError(f"corrupt data in frame {index}") from None
            table[: probs.shape[0], t] = symbols
            return symbols

        try:
            predictor = Predictor(model, layout, self.coding, mixer=mixer_class(model))
        except ValueError as e:  # settings the engine refuses (llama.cache_shape)
            raise FormatError(f"corrupt file: frame {index}: {e}") from None
        _run_frame(predictor, code, _frame_progress(progress, frame.length, layout.steps))
        try:
            data = model.tokens.decode(layout.gather(table))
        except ValueError:
            raise ChecksumError(f"corrupt data in frame {index} (undecodable tokens)") from None
        return to_crlf(data) if frame.crlf else data


def _memory() -> int | None:
    """This machine's physical memory in bytes (None where unknown)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_window(model: LoadedModel, window: int, streams: int, index: int) -> None:
    """Refuse, before allocating anything, a window longer than the model takes and a key/value
    cache (every stream's window) larger than this machine's memory, as xz refuses a file
    beyond its memory limit: a forged header cannot make the decoder swap or be killed."""
    c = model.llama.config
    longest = longest_window(c)
    if longest is not None and window > longest:
        raise FormatError(f"corrupt file: frame {index}: a {window}-token window is longer "
                          f"than this model takes ({longest})")
    need = c.num_layers * streams * c.num_kv_heads * window * (2 * c.head_dim + 8)
    have = _memory()
    if have is not None and need > have:
        raise FormatError(f"frame {index} needs {need / 1e9:.1f} GB for the windows of its "
                          f"{streams} streams, more than this machine's {have / 1e9:.1f} GB")


def decompress_stream(src: BinaryIO, dst: BinaryIO, model: str | None = None,
                      progress: Progress | None = None, threads: int | None = None,
                      device: str | None = None, workers: int | None = None,
                      cluster: str | None = None, max_size: int | None = None) -> Stats:
    """Decompress a whole container from ``src`` to ``dst``, verifying every checksum. Writes
    each frame only after its checksum matched; memory is bounded by the frame size. Any
    device, thread count and number of workers give the same bytes. A file made by
    concatenating .llmz files decodes to the concatenation of their contents (as gzip, xz and
    zstd do), each member verified on its own. ``max_size``: refuse a frame that declares more
    bytes (``--max-size``; None: any the format allows)."""
    src = fmt.Source(src)
    stats = Stats()
    while True:
        _decompress_member(src, dst, stats, model, progress, threads, device, workers, cluster,
                           max_size)
        if not src.another_member():
            return stats


def _decompress_member(src: fmt.Source, dst: BinaryIO, stats: Stats, model: str | None,
                       progress: Progress | None, threads: int | None, device: str | None,
                       workers: int | None, cluster: str | None,
                       max_size: int | None = None) -> None:
    """One member of the file (a header, its frames, its end record) into ``dst``."""
    header = fmt.Header.read(src)
    member_bytes = stats.raw_bytes
    sent: collections.deque[fmt.Frame] = collections.deque()  # in flight, in order
    end: list[fmt.End] = []

    def frames() -> Iterator[tuple[int, fmt.Frame]]:
        for index, frame in fmt.frames(src, header):
            if isinstance(frame, fmt.End):
                end.append(frame)
                return
            length = len(frame.data) if isinstance(frame, fmt.StoredFrame) else frame.length
            if max_size is not None and length > max_size:
                raise LlmzipError(f"frame {index} declares {length} bytes, more than "
                                  f"--max-size {max_size}")
            sent.append(frame)
            yield index, frame

    pool = parallel.workers_for(FrameDecoder, lambda t: (header, model, t, device), workers,
                                threads, cluster, device)
    try:
        if pool is None:
            decoder = FrameDecoder(header, model, threads, device)
            results = (decoder.decode(frame, index, progress) for index, frame in frames())
        else:
            results = pool.map(frames())
        total_crc = 0
        for data in results:
            frame = sent.popleft()
            if isinstance(frame, fmt.CodedFrame):
                stats.tokens += sum(frame.tokens)
                stats.streams.append(len(frame.tokens))
            else:
                stats.stored_frames += 1
            if pool is not None and progress:
                progress(len(data))
            dst.write(data)
            dst.flush()
            stats.raw_bytes += len(data)
            stats.frames += 1
            total_crc = zlib.crc32(data, total_crc)
    finally:
        if pool is not None:
            pool.close()
    last = end[0]
    if last.length is not None and (last.length != stats.raw_bytes - member_bytes
                                    or last.crc != total_crc):
        raise ChecksumError("checksum mismatch of the whole file: the file is corrupt")


def compress(data: bytes, **settings) -> bytes:
    """Compress bytes. Keyword arguments are :class:`Settings` fields."""
    out = io.BytesIO()
    compress_stream(io.BytesIO(data), out, Settings(**settings))
    return out.getvalue()


def decompress(blob: bytes, model: str | None = None, threads: int | None = None,
               device: str | None = None, workers: int | None = None,
               cluster: str | None = None) -> bytes:
    """Decompress bytes made by :func:`compress`; raises an LlmzipError on any problem.
    ``workers``/``cluster``: decode frames in parallel (the same bytes)."""
    out = io.BytesIO()
    decompress_stream(io.BytesIO(blob), out, model=model, threads=threads, device=device,
                      workers=workers, cluster=cluster)
    return out.getvalue()
