"""`llmzip info`: a readable description of a container's header and frames (no model needed,
no torch imported)."""

from __future__ import annotations

from typing import BinaryIO

from llmzip.format import container as fmt
from llmzip.format.mixconfig import MixConfig

_ENGINES = {
    fmt.ENGINE_EXACT: "exact integer engine: decodes on any CPU or GPU, any thread count",
    fmt.ENGINE_KEYS: "exact integer engine with key exponents: decodes on any CPU or GPU, any "
                     "thread count",
    fmt.ENGINE_LEGACY: "portable (llmzip 0.1's exact arithmetic): decodes on any CPU or GPU",
    fmt.ENGINE_MACHINE_BOUND: "machine-bound (llmzip 0.1's fast mode): this version cannot "
                              "decode it",
}


def _mixer(data: bytes) -> str:
    """The mixer settings in words; their bytes in hex when this llmzip cannot read them
    (decoding reports that as an error)."""
    try:
        return MixConfig.from_bytes(data).describe()
    except ValueError:
        return f"unreadable settings {data.hex() or '-'}"


def describe(f: BinaryIO, name: str) -> str:
    """Parse the whole container (without decoding) and describe it, each member of a file
    made by concatenating .llmz files in turn; FormatError if corrupt."""
    src = fmt.Source(f)
    parts = [_member(src, name)]
    while src.another_member():
        parts.append(_member(src, f"{name}, member {len(parts) + 1}"))
    return "\n".join(parts)


def _member(f: fmt.Source, name: str) -> str:
    header = fmt.Header.read(f)
    layout = ("one frame, short form" if header.lone is not None
              else f"frame size {header.frame_size}")
    lines = [f"{name}: llmzip format version {header.version}, {layout}"]
    m = header.model
    if m:
        lines.append(f"  model {m.fingerprint.hex()}, {_ENGINES[m.engine]}")
        lines.append(f"  window {m.window} tokens ({m.sinks} sinks), prime {m.prime} tokens")
        lines.append(f"  mixer: {_mixer(m.mix)}")
        lines.append("  coder: " + ("24-bit range coder, tokens in two parts (group, place)"
                                    if m.split else "24-bit range coder, whole tokens"))
    counts = {"coded": 0, "lzma": 0, "stored": 0}
    packed = tokens = length = crc = 0
    for index, frame in fmt.frames(f, header):
        if isinstance(frame, fmt.End):
            break
        if isinstance(frame, fmt.StoredFrame):
            counts["stored"] += 1
            packed += len(frame.data)
            length, crc = length + len(frame.data), frame.crc
            lines.append(f"  frame {index}: stored, {len(frame.data)} bytes")
        elif isinstance(frame, fmt.LzmaFrame):
            counts["lzma"] += 1
            packed += len(frame.payload)
            length, crc = length + frame.length, frame.crc
            lines.append(f"  frame {index}: {frame.length} bytes -> {len(frame.payload)} "
                         f"bytes, lzma, crc32 {frame.crc:08x}")
        else:
            counts["coded"] += 1
            packed += len(frame.payload)
            length, crc = length + frame.length, frame.crc
            tokens += sum(frame.tokens)
            lines.append(
                f"  frame {index}: {frame.length} bytes -> {len(frame.payload)} bytes, "
                f"{sum(frame.tokens)} tokens in {len(frame.tokens)} "
                f"stream{'s' if len(frame.tokens) > 1 else ''}, "
                f"crc32 {frame.crc:08x}" + (", CRLF line ends coded as LF" if frame.crlf else "")
            )
    if frame.length is not None:  # else an end1 record: the one frame's length and CRC
        length, crc = frame.length, frame.crc
    ratio = f"payload {8 * packed / length:.3f} bits/byte" if length else "empty"
    kinds = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    lines.append(f"  original {length} bytes, crc32 {crc:08x}; frames: {kinds}; "
                 f"{tokens} tokens, {ratio}")
    return "\n".join(lines)
