"""`llmzip info`: a readable description of a container's header and frames (no model needed)."""

from __future__ import annotations

from typing import BinaryIO

from llmzip import container as fmt
from llmzip.mixer import MixConfig


def _mixer(data: bytes) -> str:
    """The mixer settings in words; their bytes in hex when this llmzip cannot read them
    (decoding reports that as an error)."""
    try:
        return MixConfig.from_bytes(data).describe()
    except ValueError:
        return f"unreadable settings {data.hex() or '-'}"


def describe(f: BinaryIO, name: str) -> str:
    """Parse the whole container (without decoding) and describe it; FormatError if corrupt."""
    header = fmt.Header.read(f)
    lines = [f"{name}: llmzip format version {header.version}, frame size {header.frame_size}"]
    m = header.model
    if m and header.portable:
        lines.append(f"  model {m.fingerprint.hex()}, portable (exact integer arithmetic: "
                     "decodes on any CPU or GPU, any thread count)")
    elif m:
        lines.append(
            f"  model {m.fingerprint.hex()}, {m.dtype} on {m.device}, {m.threads} threads, "
            f"numeric env {m.env.hex()} (machine-bound: fast mode)"
        )
    if m:
        lines.append(f"  window {m.window} tokens ({m.sinks} sinks), prime {m.prime} tokens")
        lines.append(f"  mixer: {_mixer(m.mix)}")
    coded = stored = packed = 0
    tokens = 0
    index = 0
    while True:
        frame = fmt.read_frame(f, header)
        if isinstance(frame, fmt.End):
            break
        index += 1
        if isinstance(frame, fmt.StoredFrame):
            stored += 1
            packed += len(frame.data)
            lines.append(f"  frame {index}: stored, {len(frame.data)} bytes")
        else:
            coded += 1
            packed += len(frame.payload)
            tokens += sum(frame.tokens)
            lines.append(
                f"  frame {index}: {frame.length} bytes -> {len(frame.payload)} bytes, "
                f"{sum(frame.tokens)} tokens in {len(frame.tokens)} streams, "
                f"crc32 {frame.crc:08x}"
            )
    ratio = 8 * packed / frame.length if frame.length else 0.0
    lines.append(
        f"  original {frame.length} bytes, crc32 {frame.crc:08x}; {coded} coded and {stored} "
        f"stored frames, {tokens} tokens, payload {ratio:.3f} bits/byte"
    )
    return "\n".join(lines)
